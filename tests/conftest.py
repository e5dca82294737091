"""Shared fixtures: the test stack's settings, the real local services, unique topic names."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from flowforge.core.kafka_admin import ensure_topics, topic_spec
from flowforge.core.settings import Settings
from flowforge.stack import Stack

REPO = Path(__file__).resolve().parent.parent

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) draws the same examples every run, so a landing is
# reproducible; local runs keep exploring new inputs (and remember failures in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
STACK_ENV = REPO / "tests" / "stack.env"
_PATH_VARS = {"FLOWFORGE_HOME", "FLOWFORGE_STACK_CACHE_DIR"}


def stack_env() -> dict[str, str]:
    """tests/stack.env as a dict, with its relative paths anchored at the repository root."""
    env = {}
    for line in STACK_ENV.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = str(REPO / value) if key in _PATH_VARS else value
    return env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.path.as_posix():
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the test stack (tests/stack.env): its own home and ports."""
    return Settings.from_env(stack_env())


@pytest.fixture(scope="session")
def services(settings: Settings) -> Iterator[Stack]:
    """The real Kafka and Mosquitto, started through the stack code; stops what it started.

    A service that cannot start fails the tests that need it, with the stack's own message.
    """
    stack = Stack(settings)
    ours = [s for s in stack.services if s.process.pid() is None]
    try:
        asyncio.run(stack.up(report=lambda _line: None))
    except Exception as exc:  # noqa: BLE001 - turned into a test failure with the reason
        pytest.fail(f"the local test stack could not start: {exc}", pytrace=False)
    yield stack
    for service in ours:
        service.down()


def unique_name(request: pytest.FixtureRequest, prefix: str = "t") -> str:
    """A Kafka-safe name unique to this test run and test."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]
    return f"{prefix}.{base}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic(request: pytest.FixtureRequest, settings: Settings, services: Stack) -> str:
    """A fresh topic on the real broker with FlowForge's partitions and image-sized limits."""
    name = unique_name(request)
    asyncio.run(ensure_topics(settings.kafka, [topic_spec(settings.kafka, name)]))
    return name
