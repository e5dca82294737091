"""FlowForge stream processing: the Faust app, records, topics, tables, agents and sink."""
