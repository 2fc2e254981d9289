"""Worker fixtures: settings bound to the moto server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lambda_destinations.config import Settings, load_settings


@pytest.fixture
def settings_for(endpoint_url: str, sqlite_url: str) -> Callable[..., Settings]:
    """Settings for queues on the moto server, fast retries, the test's SQLite file."""

    def make(*queues: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queues": list(queues),
            "endpoint_url": endpoint_url,
            "region": "us-east-1",
            "store": sqlite_url,
            "wait_time": 1,
            "concurrency": 16,
            "retry_base": 1.0,
            "retry_max": 4.0,
            "handler_retry_max_delay": 1.0,
            "shutdown_grace": 5.0,
        }
        values.update(overrides)
        return load_settings(**values)

    return make
