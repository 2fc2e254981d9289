"""Fixtures for the acting handlers: stores, a Lambda server, an SMTP server, settings."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from handler_helpers import RecordingMoto, SmtpServer, start_recording_moto

from lambda_destinations.config import Settings
from lambda_destinations.store import Store


@pytest.fixture
async def jobs_store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated store (SQLite or PostgreSQL: see ``store_url``)."""
    async with Store.from_url(store_url) as store:
        await store.migrate()
        yield store


@pytest.fixture
async def other_jobs_store(jobs_store: Store) -> AsyncIterator[Store]:
    """A second store on the same database, as another replica would have."""
    async with Store.from_url(jobs_store.url) as other:
        yield other


@pytest.fixture(scope="session")
def recording_moto() -> Iterator[RecordingMoto]:
    """A moto server in a process of its own that records requests (see handler_helpers)."""
    server = start_recording_moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on 127.0.0.1 that keeps what it receives."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def handler_settings(settings_for: Callable[..., Settings]) -> Callable[..., Settings]:
    """``settings_for`` with retries capped at 2 s, so handler retries stay quick."""
    return functools.partial(settings_for, retry_max=2.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    """A webhook receiver (test_webhook_handler.Receiver), started, stopped after the test."""
    from test_webhook_handler import Receiver

    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
