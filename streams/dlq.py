"""The dead-letter topic: what the agents cannot use, with the original bytes and the reason."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiokafka.errors import MessageSizeTooLargeError

from flowforge.core.dead_letter import error_headers, fit, without_value
from flowforge.core.envelope import ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC
from streams import metrics

if TYPE_CHECKING:
    from streams.app import FlowForgeApp

log = logging.getLogger(__name__)


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
    A dead letter is never refused itself: when the bytes with the headers exceed the topic
    limit (ours, or the broker's if lower), the value is empty and the detail gives the size.
    """
    out = [
        (name, value.encode())
        for name, value in headers.items()
        if not name.startswith("ff-error-")
    ]
    out += error_headers(stage, reason, detail)
    out += [
        (ORIGINAL_TOPIC, str(message.topic).encode()),
        (ORIGINAL_PARTITION, str(message.partition).encode()),
        (ORIGINAL_OFFSET, str(message.offset).encode()),
    ]
    key = message.key if isinstance(message.key, bytes) else b""
    value, out = fit(key, data, out, flow.settings.kafka.max_message_bytes)
    try:
        await acked([await flow.topics.dlq.send(key=message.key, value=value, headers=out)])
    except MessageSizeTooLargeError:  # the broker's own limit is lower than ours
        out = without_value(out, len(value))
        await acked([await flow.topics.dlq.send(key=message.key, value=b"", headers=out)])
    metrics.DLQ.labels(reason=reason).inc()
    log.debug("dead letter %s/%s@%s: %s", message.topic, message.partition, message.offset, reason)


async def acked(futures: list[Any]) -> None:
    """Wait until Kafka acknowledged every message sent (Faust's send futures)."""
    await asyncio.gather(*futures)
