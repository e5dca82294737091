"""Errors of the bridges, each with a ``retriable`` flag that the backoff helper obeys.

The tree::

    FlowForgeError (flowforge.core.errors)
    +-- BridgeError                base of the bridges' errors
        +-- PublishFailed          Kafka did not acknowledge a record in time (retriable)
        +-- PayloadRejected        an image that will never be published; ``reason`` is the DLQ
        |                          code (``empty``, ``too_large``, ``bad_source_id``, ...)
        +-- SourceUnavailable      the source (MQTT broker, directory) cannot be read (retriable)
        +-- LibraryThreadDied      the thread running a blocking library (paho) ended with an
        |                          exception; the process exits non-zero (not retriable)
        +-- CheckpointLocked       another batch bridge works on the same root, source and topic
        +-- FileRefused            a file the batch bridge will not read (outside the root,
        |                          unreadable, still changing); ``reason`` says which
        +-- FileTooLarge           a file over the record limit, with its content digest
        +-- IllegalTransition      a stream state change the RTSP watchdog does not allow (a bug)
        +-- ApiError               the RTSP stream API answers ``status`` with a one-line message
            +-- UnknownStream      no stream has that source id (404)
            +-- StreamExists       a stream with that source id is already captured (409)

Client-library errors keep their own flag: aiokafka's ``KafkaError`` subclasses carry
``retriable`` too, so the backoff helper treats both alike.
"""

from __future__ import annotations

from flowforge.core.errors import FlowForgeError


class BridgeError(FlowForgeError):
    """Base of the bridges' errors."""


class PublishFailed(BridgeError):
    """Kafka did not acknowledge a record (broker down, timeout); trying again can help."""

    retriable = True


class PayloadRejected(BridgeError):
    """A payload that is never published to the image topic; ``reason`` is its DLQ code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SourceUnavailable(BridgeError):
    """The source cannot be read right now (broker unreachable, directory missing)."""

    retriable = True


class LibraryThreadDied(BridgeError):
    """The thread running a blocking client library ended with an exception."""


class IllegalTransition(BridgeError, RuntimeError):
    """A transition the state machine does not allow (a bug in the caller)."""


class ApiError(BridgeError):
    """A request the API answers with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UnknownStream(ApiError):
    """No stream has that source id (404)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class StreamExists(ApiError):
    """A stream with that source id is already captured (409)."""

    def __init__(self, source_id: str) -> None:
        super().__init__(409, f"stream {source_id!r} exists; DELETE it first")


class CheckpointLocked(BridgeError):
    """Another batch bridge works on the same root, source and topic (it holds the lock)."""


class FileRefused(BridgeError):
    """A file the bridge will not read (outside the root, unreadable, still changing)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FileTooLarge(BridgeError):
    """A file over the record limit, hashed in chunks: its content digest and image id."""

    def __init__(self, size: int, digest: str) -> None:
        super().__init__(f"file of {size} bytes")
        self.size = size
        self.digest = digest  # flowforge.core.envelope.content_digest
        self.image_id = digest[:32]
