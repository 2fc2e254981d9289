"""Names the console tests share with their conftest (imported by name: tests/ is no package)."""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

from lambda_destinations.config import Settings
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import DeliveryRow, InvocationRow, Store

# One token for the session: the console process gets it in its environment.
TOKEN = "console-test-token-" + uuid.uuid4().hex
# The name browsers open the console at behind the test's reverse proxy (mapped to 127.0.0.1).
PUBLIC_HOST = "ops.example.com"
XSS = '<img src=x onerror="window.__xss=1">'


@dataclass
class World:
    """What the worker stored, and where everything is."""

    endpoint: Any  # LambdaEndpoint
    store_url: str
    queue_url: str
    dlq_url: str
    dlq_name: str
    env: dict[str, str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role

    def key(self, role: str) -> str:
        record = self.records[role]
        return f"{record['requestContext']['requestId']}:{record['requestContext']['condition']}"


@dataclass
class RunningConsole:
    url: str
    process: subprocess.Popen[str]


async def stored_failure(
    settings: Settings | str,
    *,
    function_arn: str | None = None,
    record: dict[str, Any] | None = None,
) -> InvocationRow:
    """``record``, or a failure of ``orders-api`` (or ``function_arn``), in the settings' store
    (or the store at that URL), as the worker stores one."""
    if record is None:
        record = failure_record(
            random.Random(3), function="orders-api", condition="RetriesExhausted"
        )
    if function_arn is not None:
        record["requestContext"]["functionArn"] = function_arn
    row = invocation_row(decode(json.dumps(record)), "https://sqs/q")
    async with Store.from_url(settings if isinstance(settings, str) else settings.store) as store:
        await store.migrate()
        await store.save_invocation(row, DeliveryRow(row.key, "m-1", "https://sqs/q", 1))
    return row
