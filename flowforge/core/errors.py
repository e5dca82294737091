"""Errors of the shared core (settings, local stack, stream capture).

The tree::

    FlowForgeError                 base; ``retriable`` says whether trying again can help
    +-- SettingsError              a setting has a bad value (names the variable; not retriable)
    +-- StackError                 the local service stack cannot do what was asked
        +-- PrerequisiteMissing    java / mvn / mosquitto not installed (not retriable)
        +-- PortTaken              a port we need is held by a process that is not ours
        +-- ServiceStartFailed     a service exited or never answered (names its log file)
        +-- ServiceUnhealthy       a running service does not answer its health probe (retriable)
    +-- CaptureUnavailable         an RTSP stream cannot be opened (retriable unless the URL is bad)

Every message is one line an operator can act on: what failed, why, and what to try.
"""

from __future__ import annotations


class FlowForgeError(Exception):
    """Base of FlowForge's own errors; ``retriable`` tells a backoff loop whether to try again."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class SettingsError(FlowForgeError, ValueError):
    """A setting (environment variable or file) has a value FlowForge cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class StackError(FlowForgeError):
    """The local service stack (Kafka, Mosquitto) cannot do what was asked."""


class PrerequisiteMissing(StackError):
    """A program the local stack needs is not installed."""


class PortTaken(StackError):
    """A port the stack needs is held by a process FlowForge did not start."""


class ServiceStartFailed(StackError):
    """A service exited during start-up or never answered its health probe in time."""


class ServiceUnhealthy(StackError):
    """A running service does not answer its health probe."""

    retriable = True


class CaptureUnavailable(FlowForgeError):
    """An RTSP stream cannot be opened: the server is unreachable or serves no readable video."""

    retriable = True
