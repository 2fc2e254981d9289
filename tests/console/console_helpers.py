"""Names the console tests share with their conftest (imported by name: tests/ is no package)."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from typing import Any

# One token for the session: the console process gets it in its environment.
TOKEN = "console-test-token-" + uuid.uuid4().hex
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
