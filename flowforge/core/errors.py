"""Errors of the shared core (settings, envelope, ClickHouse, local stack, stream capture).

The tree::

    FlowForgeError                 base of every FlowForge error; ``retriable`` says whether
    |                              trying again can help (the backoff helper obeys it)
    +-- SettingsError              a setting has a bad value (names the variable; not retriable)
    +-- EnvelopeError              an image message's envelope headers are missing or malformed;
    |                              ``reason`` is the dead-letter code (not retriable)
    +-- ClickHouseUnavailable      ClickHouse cannot be reached or refused the request (retriable)
    +-- EngineLocked               the embedded engine's directory is held by another process
    +-- MigrationFailed            a schema statement failed (names the file)
    +-- PortInUse                  a process's own listening port (web pages) is taken: names
    |                              the holder and the option to choose another (not retriable)
    +-- CaptureUnavailable         an RTSP stream cannot be opened (retriable unless the URL is bad)
    +-- StackError                 the local service stack cannot do what was asked
        +-- StackNotFound          nothing of FlowForge's has run under this FLOWFORGE_HOME
        +-- PrerequisiteMissing    java / mvn / mosquitto not installed (not retriable)
        +-- PortTaken              a port we need is held by a process that is not ours
        +-- ServiceStartFailed     a service exited or never answered (names its log file)
        +-- ServiceUnhealthy       a running service does not answer its health probe (retriable)

    Stopped                        not an error: the stop event was set while the backoff
                                   helper waited to retry (a plain Exception, so no handler of
                                   FlowForgeError swallows a shutdown)

The other packages keep their own errors, each under FlowForgeError: ``streams.errors``,
``streams.processing.errors``, ``bridges.errors``, ``flowforge.cli.errors``,
``flowforge.sim.errors``.

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


class PortInUse(FlowForgeError):
    """A port this process must listen on is taken (the message names the holder)."""


class StackError(FlowForgeError):
    """The local service stack (Kafka, Mosquitto) cannot do what was asked."""


class StackNotFound(StackError):
    """The home has no local stack or data (never started here, or another FLOWFORGE_HOME)."""

    #: What to do, appended to every message.
    HINT = (
        "start the stack (`flowforge stack up --pipeline`, or `make run`), or set "
        "FLOWFORGE_HOME to the home of the stack you mean"
    )

    def __init__(self, missing: str) -> None:
        super().__init__(f"{missing}; {self.HINT}")


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


class ClickHouseUnavailable(FlowForgeError):
    """ClickHouse cannot be reached or refused the request (retriable)."""

    retriable = True


class EngineLocked(FlowForgeError):
    """The embedded engine's data directory is held by another process (not retriable)."""


class MigrationFailed(FlowForgeError):
    """A schema statement failed (names the file)."""


class EnvelopeError(FlowForgeError, ValueError):
    """The envelope headers are missing or malformed; ``reason`` is the DLQ code."""

    retriable = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Stopped(Exception):
    """The stop event was set while waiting to retry."""
