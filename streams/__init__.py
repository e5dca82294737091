"""FlowForge stream processing: the Faust app, records, topics, tables and agents."""
