"""The README's handler examples are real configurations: each one loads and builds."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from handler_helpers import failure_record

from certificates import self_signed_certificate
from lambda_destinations.config import RouteConfig, load_settings
from lambda_destinations.handlers import HandlerRegistry
from lambda_destinations.handlers.replay import build
from lambda_destinations.schemas import decode

README = Path(__file__).parents[2] / "README.md"


def handler_examples() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Built-in handlers") : text.index("## Operating")]
    blocks = re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    return [block for block in blocks if "[handlers." in block]


def test_the_readme_documents_every_acting_handler() -> None:
    types = {
        table["type"]
        for block in handler_examples()
        for table in tomllib.loads(block)["handlers"].values()
    }
    assert {"sms", "email", "replay", "webhook"} <= types


@pytest.mark.parametrize("block", handler_examples())
def test_a_readme_example_builds(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "from-the-environment")
    for name in ("ONCALL_HOOK_AUTH", "ONCALL_HOOK_SECRET", "PAGERDUTY_ROUTING_KEY"):
        monkeypatch.setenv(name, "from-the-environment")
    for name in (
        "ONCALL_HOOK_URL",
        "SLACK_WEBHOOK_URL",
        "TEAMS_WEBHOOK_URL",
        "DISCORD_WEBHOOK_URL",
    ):
        monkeypatch.setenv(name, "https://hooks.example.com/services/T0/B0/x")
    data: dict[str, Any] = tomllib.loads(block)
    for table in data["handlers"].values():
        if "cert_bundle" in table:  # loaded at start: the example's path, made real here
            table["cert_bundle"] = str(self_signed_certificate(tmp_path)[0])
    routes = data.get("routes") or [RouteConfig(handlers=("persist", *data["handlers"]))]
    settings = load_settings(
        queues=data.get("queues") or ["q"],
        store=f"sqlite:///{tmp_path / 'store.db'}",
        handlers=data["handlers"],
        routes=routes,
    )

    router = HandlerRegistry(settings).router()

    names = {handler.name for route in router.routes for handler in route.chain}
    assert set(data["handlers"]) <= names


@pytest.mark.parametrize(
    "error_type",
    [
        "Sandbox.Timedout",  # Lambda's own timeout, as its records name it
        "TimeoutError",  # the function's code timing out a call
    ],
)
def test_the_readme_replay_of_timeouts_replays_lambdas_timeouts(
    error_type: str, handler_settings: Any
) -> None:
    # given: every README example of a replay handler said to replay timeouts
    tables = [
        table
        for block in handler_examples()
        for name, table in tomllib.loads(block)["handlers"].items()
        if table.get("type") == "replay" and "timeout" in name
    ]
    record = failure_record(error_type=error_type, message="Task timed out after 3.00 seconds")

    # then: each replays a function that timed out
    assert tables
    for table in tables:
        options = {key: value for key, value in table.items() if key != "type"}
        handler = build("retry-timeouts", options, handler_settings("q"))
        assert handler.policy.matches(decode(json.dumps(record))), table
