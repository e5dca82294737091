"""Errors of the RTSP simulator (stdlib only: the system-python server imports them too).

The tree::

    FlowForgeError                 (flowforge.core.errors)
    +-- SimError                   the simulator cannot do what was asked
        +-- SimConfigError         a stream or server setting is invalid (names it; not retriable)
        +-- SimPortBusy            the RTSP or API port is held by another process
        +-- SimUnavailable         GStreamer, an encoder or ffmpeg is not installed
        +-- SimCheckFailed         `flowforge sim check` could not read the stream (retriable)

Every message is one line an operator can act on.
"""

from __future__ import annotations

from flowforge.core.errors import FlowForgeError


class SimError(FlowForgeError):
    """The RTSP simulator cannot do what was asked."""


class SimConfigError(SimError, ValueError):
    """A stream or server setting of the simulator is invalid."""


class SimPortBusy(SimError):
    """A port the simulator needs is already in use."""


class SimUnavailable(SimError):
    """A program or GStreamer element the simulator needs is not installed."""


class SimCheckFailed(SimError):
    """An RTSP URL could not be opened or read."""

    retriable = True
