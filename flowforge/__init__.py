"""FlowForge's own packages besides the runtime: ``core`` (shared by everything), ``cli`` (the
``flowforge`` command), and the dev tooling ``stack`` (local services) and ``sim`` (RTSP
simulator). The layers between them are in README's "How it fits together"."""

__all__: list[str] = []
