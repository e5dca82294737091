"""FlowForge's shared core: settings, the `flowforge` command and the local service stack."""

__all__: list[str] = []
