"""Shared fixtures: the test stack's settings, the real local services, unique topic names.

The helpers behind them live in tests/support/ (shared with bench/)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from contextlib import ExitStack

import pytest
from hypothesis import settings as hypothesis_settings

from flowforge.core.kafka_admin import ensure_topics, topic_spec
from flowforge.core.settings import Settings
from flowforge.stack import Stack
from tests.support.stack import running_stack, shared_ports_lock, stack_env
from tests.support.unique import unique_name

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) draws the same examples every run, so a landing is
# reproducible; local runs keep exploring new inputs (and remember failures in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


_STATE_DIR = tempfile.mkdtemp(prefix="flowforge-test-state-")


def pytest_configure(config: pytest.Config) -> None:
    """Code under test that falls back to the default FLOWFORGE_HOME ($XDG_STATE_HOME/flowforge)
    writes under a temporary directory, never into the user's state directory. Set before
    collection, so environments that test modules copy at import have it too."""
    os.environ["XDG_STATE_HOME"] = _STATE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove that temporary directory (only it)."""
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.path.as_posix():
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """A session with integration tests takes the shared stack's ports lock before its first
    test: waiting there for another session (another clone's `make test`) is not charged to
    the first test's time limit, which once failed every test of a waiting session."""
    integration = any(item.get_closest_marker("integration") for item in session.items)
    if not integration or session.config.option.collectonly:
        return (yield)
    with shared_ports_lock():
        return (yield)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the test stack (tests/stack.env): its own home and ports."""
    return Settings.from_env(stack_env())


@pytest.fixture(scope="session")
def services() -> Iterator[Stack]:
    """The real Kafka and Mosquitto, started through the stack code; stops what it started.

    A service that cannot start fails the tests that need it, with the stack's own message.
    """
    with ExitStack() as running:
        try:
            stack, _env = running.enter_context(running_stack())
        except Exception as exc:  # noqa: BLE001 - turned into a test failure with the reason
            pytest.fail(f"the local test stack could not start: {exc}", pytrace=False)
        yield stack


@pytest.fixture
def topic(request: pytest.FixtureRequest, settings: Settings, services: Stack) -> str:
    """A fresh topic on the real broker with FlowForge's partitions and image-sized limits."""
    name = unique_name(request)
    asyncio.run(ensure_topics(settings.kafka, [topic_spec(settings.kafka, name)]))
    return name
