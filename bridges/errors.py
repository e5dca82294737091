"""Errors of the bridges, each with a ``retriable`` flag that the backoff helper obeys.

The tree::

    FlowForgeError (flowforge.core.errors)
    +-- BridgeError                base of the bridges' errors
        +-- PublishFailed          Kafka did not acknowledge a record in time (retriable)
        +-- PayloadRejected        an image that will never be published; ``reason`` is the DLQ
        |                          code (``empty``, ``too_large``, ``bad_source_id``, ...)
        +-- SourceUnavailable      the source (MQTT broker, directory) cannot be read (retriable)
        +-- LibraryThreadDied      the thread running a blocking library (paho) ended with an
                                   exception; the process exits non-zero (not retriable)

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
