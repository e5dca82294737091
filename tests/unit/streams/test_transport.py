"""Which group-join errors the worker's consumer hands back to join again, and which stay fatal;
which offset it commits while images are still in flight; how soon it fetches again after its
stream buffer was full; how a sink-only worker paces its fetches."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from aiokafka import errors
from faust.types import TP
from intervaltree import IntervalTree

from streams.transport import Consumer, is_transient_join_error

TP0 = TP("images.raw", 0)
TP1 = TP("images.raw", 1)


@pytest.mark.parametrize(
    "exc",
    [
        errors.KafkaError("UnknownError()"),  # aiokafka's wrapper of an unexpected error code
        errors.RequestTimedOutError(),
        errors.NodeNotReadyError(),
    ],
)
def test_unexpected_and_retriable_join_errors_are_transient(exc: errors.KafkaError) -> None:
    """An unexpected error code (a plain KafkaError) or a retriable error means: join again."""
    assert is_transient_join_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        errors.GroupAuthorizationFailedError("group"),
        errors.InconsistentGroupProtocolError(),
        errors.InvalidSessionTimeoutError(),
        ValueError("not Kafka's"),
    ],
)
def test_fatal_join_errors_are_not_transient(exc: Exception) -> None:
    """Errors aiokafka raises as fatal (their own non-retriable types) still end the worker."""
    assert not is_transient_join_error(exc)


@dataclass(eq=False)
class _Message:
    """What the consumer knows of a message handed to an agent: its partition, offset, ack."""

    tp: TP
    offset: int
    acked: bool = False


def _consumer(committed: int | None, acked: list[int], in_flight: list[_Message]) -> Consumer:
    """The worker's consumer with only its offset bookkeeping, as Faust keeps it: on TP0
    ``committed`` (the next offset to read), ``acked`` offsets, and ``in_flight`` messages
    handed to agents and not acked yet."""
    consumer = Consumer.__new__(Consumer)
    consumer._acked = defaultdict(list, {TP0: list(acked)})
    consumer._acked_index = defaultdict(set, {TP0: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None, {TP0: committed})
    consumer._unacked_messages = weakref.WeakSet(in_flight)
    return consumer


def test_never_commits_past_an_image_still_in_flight() -> None:
    """An image at the committed head still being processed while the next four are done:
    the commit stays at it (Faust 0.15.3 commits 2590, faust-streaming#606, and a crash then
    loses the image); once it is done, the whole run commits."""
    slow = _Message(TP0, 2585)
    consumer = _consumer(2585, [2586, 2587, 2588, 2589], [slow])
    assert consumer._new_offset(TP0) is None
    slow.acked = True
    consumer._acked[TP0].append(2585)
    consumer._acked_index[TP0].add(2585)
    assert consumer._new_offset(TP0) == 2590


@pytest.mark.parametrize("committed", [None, 0, 10])
def test_nothing_commits_past_the_lowest_image_in_flight(committed: int | None) -> None:
    """With no commit yet (None, or 0, which Faust reads as none) or one at 10: an image in
    flight at 10 and acked 11, 12, 14 commit nothing (Faust commits 13). In-flight images of
    another partition, acked ones and ones below the committed offset do not count."""
    in_flight = [_Message(TP0, 10), _Message(TP1, 2), _Message(TP0, 7, acked=True)]
    if committed:
        in_flight.append(_Message(TP0, committed - 3))  # left from before a rebalance
    consumer = _consumer(committed, [11, 12, 14], in_flight)
    assert consumer._new_offset(TP0) is None
    assert consumer._acked[TP0] == [11, 12, 14]


def test_what_is_acked_below_the_lowest_image_in_flight_commits() -> None:
    """Acked 8, 9 below an image in flight at 10 commit 10; 11 and 12 wait for it."""
    consumer = _consumer(8, [8, 9, 11, 12], [_Message(TP0, 10)])
    assert consumer._new_offset(TP0) == 10
    assert consumer._acked[TP0] == [11, 12]


def test_commits_as_faust_does_with_nothing_in_flight() -> None:
    """Nothing in flight: the first consecutive run of acked offsets commits, as in Faust."""
    consumer = _consumer(5, [5, 6, 7, 9], [])
    assert consumer._new_offset(TP0) == 8


def test_fetches_again_as_soon_as_a_full_buffer_has_room() -> None:
    """Every assigned partition paused because the agent's buffer is full: once the buffer
    drops (50 ms later here), the consumer looks for records again at once, the partition
    active, not after Faust's one-second sleep, during which the worker sat idle with images
    waiting in Kafka."""

    async def scenario() -> tuple[float, object]:
        consumer = Consumer.__new__(Consumer)
        consumer.app = SimpleNamespace(client_only=False, in_recovery=False)
        consumer.flow_active = True
        consumer._active_partitions = {TP0}
        consumer._paused_partitions = set()
        consumer._buffered_partitions = set()
        consumer._stopped = asyncio.Event()
        consumer.not_waiting_next_records = asyncio.Event()
        consumer.on_buffer_full(TP0)
        started = time.monotonic()
        waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))
        await asyncio.sleep(0.05)
        consumer.on_buffer_drop(TP0)
        records, active = await waiting
        assert records == {}
        return time.monotonic() - started, active

    waited, active = asyncio.run(scenario())
    assert active == {TP0}
    assert waited < 0.4, f"looked again after {waited:.2f} s"
