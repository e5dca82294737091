"""Errors of the worker (the Faust app, its agents and the sink).

The tree::

    FlowForgeError (flowforge.core.errors)
    +-- MetadataInvalid            an images.metadata value is not an ImageMetadata record;
    |                              ``reason`` is the dead-letter code (not retriable)
    +-- SpoolUnusable              the sink's spool file cannot be opened or written
    +-- InsertRejected             ClickHouse refused a batch for a reason retrying cannot fix
    +-- ImageRejected              (streams.processing.errors) these bytes are not an image we
                                   process; the pure processing functions raise it

ClickHouse outages are ``ClickHouseUnavailable`` (flowforge.core.errors, retriable): the sink
spools the batch and retries.
"""

from __future__ import annotations

from flowforge.core.errors import FlowForgeError


class MetadataInvalid(FlowForgeError, ValueError):
    """A images.metadata value is not an ImageMetadata record; ``reason`` is the DLQ code."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.reason = "bad_metadata"
        self.detail = detail


class SpoolUnusable(FlowForgeError):
    """The spool file cannot be opened or written (corrupt, unwritable, disk full)."""


class InsertRejected(FlowForgeError):
    """ClickHouse refused the batch for a reason retrying cannot fix (schema, bad data)."""
