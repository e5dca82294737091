"""Which group-join errors the worker's consumer hands back to join again, and which stay fatal."""

from __future__ import annotations

import pytest
from aiokafka import errors

from streams.transport import is_transient_join_error


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
