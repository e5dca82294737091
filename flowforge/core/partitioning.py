"""Which partition an image goes to: chosen by its image id, so one source spreads over all.

Every topic stays keyed by the source id (readable in ``kcat`` and ``flowforge tail``), but the
key no longer chooses the partition: FlowForge's producers (the bridges' publisher and the
worker) name the partition themselves, the one Kafka's default partitioner (murmur2) would give
a record keyed by the image id. So one source's images spread evenly over every partition (a
single camera, a batch directory or the bare ``images/raw`` MQTT topic can use every worker),
and the same image, sent again or replayed, always lands on the same partition, where its
``seen-images`` entry is. A message from another producer (``kcat -P``) lands wherever that
producer puts it; the worker handles it as before.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from aiokafka.partitioner import DefaultPartitioner

_murmur2 = DefaultPartitioner()


class KnowsPartitions(Protocol):
    """A producer that tells a topic's partition ids (aiokafka's, and the worker's Faust one)."""

    async def partitions_for(self, topic: str) -> Collection[int]: ...


def partition_of(image_id: str, partitions: Collection[int]) -> int:
    """The partition of ``partitions`` (a topic's partition ids) that image ``image_id`` goes
    to: Kafka's default partitioner applied to the image id."""
    if not partitions:
        raise ValueError("the topic has no partitions")
    ordered = sorted(partitions)
    return int(_murmur2(image_id.encode(), ordered, ordered))


async def partition_for(producer: KnowsPartitions, topic: str, image_id: str) -> int:
    """The partition of ``topic`` that image ``image_id`` goes to, from ``producer``'s metadata
    of the topic (fetched if it has none yet)."""
    return partition_of(image_id, await producer.partitions_for(topic))
