"""The publisher's pure parts: the in-flight byte budget, size checks, dead-letter headers."""

from __future__ import annotations

import asyncio

import pytest

from bridges.errors import PayloadRejected
from bridges.publisher import ByteBudget, ImageMessage, KafkaPublisher, dead_letter_headers
from flowforge.core.envelope import content_image_id
from flowforge.core.settings import Settings


async def test_budget_waits_until_bytes_are_released() -> None:
    """acquire waits while the bytes would exceed the budget and goes on after a release."""
    budget = ByteBudget(100)
    await budget.acquire(60)
    waiter = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert budget.used == 60
    await budget.release(60)
    await asyncio.wait_for(waiter, 1)
    assert budget.used == 50


async def test_budget_lets_an_oversized_item_through_alone() -> None:
    """An item larger than the whole budget goes when nothing else is in flight."""
    budget = ByteBudget(100)
    await asyncio.wait_for(budget.acquire(500), 1)
    assert budget.used == 500
    blocked = asyncio.create_task(budget.acquire(1))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await budget.release(500)
    await asyncio.wait_for(blocked, 1)


def _message(data: bytes) -> ImageMessage:
    return ImageMessage("mqtt", "cam-01", "images/raw/cam-01", data, 1_700_000_000_000)


def test_check_rejects_empty_and_over_limit_payloads() -> None:
    """Empty payloads are rejected as empty, records over the topic limit as too_large."""
    settings = Settings.from_env({"FLOWFORGE_KAFKA_MAX_MESSAGE_BYTES": "64KiB"})
    publisher = KafkaPublisher(settings.kafka, settings.bridge, bridge_name="test")
    publisher.check(_message(b"x" * 60_000))
    with pytest.raises(PayloadRejected) as empty:
        publisher.check(_message(b""))
    assert empty.value.reason == "empty"
    with pytest.raises(PayloadRejected) as large:
        publisher.check(_message(b"x" * 65_536))
    assert large.value.reason == "too_large"
    assert "65536 payload" in large.value.detail


def test_envelope_and_dead_letter_headers() -> None:
    """The envelope uses the content-hash id; dead letters add stage, reason and detail."""
    message = _message(b"abc")
    envelope = message.envelope()
    assert envelope.image_id == content_image_id("cam-01", b"abc")
    headers = dict(dead_letter_headers(envelope, "too_large", "d" * 1000))
    assert headers["ff-error-stage"] == b"bridge"
    assert headers["ff-error-reason"] == b"too_large"
    assert len(headers["ff-error-detail"]) == 300
    assert headers["ff-source-type"] == b"mqtt"
    assert headers["ff-origin"] == b"images/raw/cam-01"
