"""The dead-letter topic: what the agents cannot use, with the original bytes and the reason."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from flowforge.core.envelope import (
    ERROR_DETAIL,
    ERROR_REASON,
    ERROR_STAGE,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
)
from streams import metrics

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)

MAX_DETAIL = 300


async def dead_letter(
    flow: FlowForgeApp,
    message: Any,
    data: bytes,
    headers: dict[str, str],
    *,
    stage: str,
    reason: str,
    detail: str,
) -> None:
    """Send ``data`` with the original headers plus the reason to images.dlq; wait for the ack.

    ``stage`` says which agent refused it (``envelope`` and ``process`` for images from
    images.raw, ``sink`` for records from images.metadata), so a replay can tell them apart.
    """
    out = [
        (name, value.encode())
        for name, value in headers.items()
        if not name.startswith("ff-error-")
    ]
    out += [
        (ERROR_STAGE, stage.encode()),
        (ERROR_REASON, reason.encode()),
        (ERROR_DETAIL, detail[:MAX_DETAIL].encode("utf-8", errors="replace")),
        (ORIGINAL_TOPIC, str(message.topic).encode()),
        (ORIGINAL_PARTITION, str(message.partition).encode()),
        (ORIGINAL_OFFSET, str(message.offset).encode()),
    ]
    await acked([await flow.topics.dlq.send(key=message.key, value=data, headers=out)])
    metrics.DLQ.labels(reason=reason).inc()
    log.debug("dead letter %s/%s@%s: %s", message.topic, message.partition, message.offset, reason)


async def acked(futures: list[Any]) -> None:
    """Wait until Kafka acknowledged every message sent (Faust's send futures)."""
    await asyncio.gather(*futures)
