"""The RTSP simulator: GStreamer RTSP cameras with an HTTP API, a test video writer, a checker."""

__all__: list[str] = []
