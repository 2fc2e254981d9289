"""The README's handler examples are real configurations: each one loads and builds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from certificates import self_signed_certificate
from lambda_destinations.config import RouteConfig, load_settings
from lambda_destinations.handlers import HandlerRegistry

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
