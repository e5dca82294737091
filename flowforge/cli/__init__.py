"""The operator shell: the ``flowforge`` command; nothing in FlowForge imports it."""
