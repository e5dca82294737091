"""The partition an image goes to: by its image id, evenly, the same every time."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from aiokafka.partitioner import murmur2

from flowforge.core.partitioning import partition_of


def _image_id(i: int) -> str:
    return hashlib.sha256(f"cam-01\0{i}".encode()).hexdigest()[:32]


def test_the_partition_is_the_one_kafkas_default_partitioner_gives_the_image_id() -> None:
    """The partition is murmur2 of the image id over the sorted partitions, as Kafka's default
    partitioner (Java and aiokafka) places a record keyed by the image id."""
    for i in range(200):
        image_id = _image_id(i)
        expected = (murmur2(image_id.encode()) & 0x7FFFFFFF) % 6
        assert partition_of(image_id, {5, 3, 1, 0, 2, 4}) == expected


def test_one_sources_images_spread_evenly_and_each_image_always_meets_one_partition() -> None:
    """600 images of one source fill all 6 partitions, none under half the even share, and
    asking again for any image gives the same partition."""
    ids = [_image_id(i) for i in range(600)]
    counts = Counter(partition_of(image_id, range(6)) for image_id in ids)
    assert set(counts) == set(range(6))
    assert min(counts.values()) >= 50, counts
    assert [partition_of(i, range(6)) for i in ids] == [partition_of(i, range(6)) for i in ids]


def test_a_topic_without_partitions_is_an_error() -> None:
    """No partition to choose from raises a clear error, not a ZeroDivisionError."""
    with pytest.raises(ValueError, match="no partitions"):
        partition_of(_image_id(1), set())
