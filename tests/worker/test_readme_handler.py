"""The README's own handler, as printed, through a real worker against the moto server.

The section "Routes and handlers" holds a TOML configuration and a Python module; both are
taken from the README as they stand, so the example a reader copies is the one tested.
"""

from __future__ import annotations

import json
import random
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from worker_helpers import receive_all

from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.worker import Worker
from lambda_destinations.worker.queues import REASON_ATTRIBUTE

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> tuple[dict[str, Any], str]:
    """The configuration and the handler module of the README's "Routes and handlers"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Routes and handlers") : text.index("## Built-in handlers")]
    (toml,) = re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)
    (python,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return tomllib.loads(toml), python


@pytest.fixture
def readme_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Write the README's module where its ``handler_modules`` entry says; return the config."""
    config, python = readme_example()
    (module_name,) = config["handler_modules"]
    package, _, module = module_name.partition(".")
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / f"{module}.py").write_text(python)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (package, module_name):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return config


def readme_settings(settings_for: Any, url: str, config: dict[str, Any]) -> Any:
    """Settings for ``url`` on the moto server with the README's handlers and routes."""
    keys = ("handler_modules", "routes", "handlers")
    return settings_for(url, **{key: config[key] for key in keys})


def test_the_readme_handler_uses_one_import_line_and_a_typed_record() -> None:
    _, python = readme_example()

    imports = [line for line in python.splitlines() if "lambda_destinations" in line]
    assert imports == [
        "from lambda_destinations import ErrorPayload, HandlerContext, InvocationRecord, "
        "QuarantineMessage, handler"
    ]
    assert "record: InvocationRecord[Order, Receipt]" in python


async def test_the_readme_handler_runs_once_per_record_and_quarantines_a_misfit(
    sqs, make_queue, settings_for, readme_module
) -> None:
    # given: the README's configuration on a queue of the moto server
    url, dlq = make_queue("orders-success")
    settings = readme_settings(settings_for, url, readme_module)
    rng = random.Random(15)
    valid = success_record(rng, function="orders-api")
    misfit = success_record(rng, function="orders-api")
    del misfit["responsePayload"]["ok"]
    # and: the valid record twice (a duplicate delivery), the misfit once
    for record in (valid, valid, misfit):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    # when
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)

    # then: the valid record was handled once, with its payload validated into the models
    done = [entry for entry in logs if entry["event"] == "order done"]
    assert [(e["order_id"], e["total"], e["ok"]) for e in done] == [
        (valid["requestPayload"]["orderId"], valid["requestPayload"]["total"], True)
    ]
    assert stats.duplicates == 1
    assert stats.outcomes["ack"] == 2
    # and: the misfit was quarantined at once, with pydantic's reason in one line
    assert stats.outcomes["quarantine"] == 1
    assert stats.outcomes["retry"] == 0
    (dead,) = receive_all(sqs, dlq)
    assert json.loads(dead["Body"]) == misfit
    reason = dead["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason == (
        "handler order-done: record does not fit InvocationRecord[Order, Receipt]: "
        "missing field responsePayload.ok"
    )
    assert not any("Traceback" in str(entry) for entry in logs)


async def test_the_readme_failure_handler_reads_its_own_settings(
    sqs, make_queue, settings_for, readme_module
) -> None:
    # given: a timeout of an orders function, which the README routes to notify-oncall
    url, _ = make_queue("orders-failure")
    settings = readme_settings(settings_for, url, readme_module)
    record = failure_record(
        random.Random(16),
        function="orders-api",
        condition="RetriesExhausted",
        error=("TimeoutError", "the payment service did not answer", "python"),
    )
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    # when
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)

    # then: the handler saw its [handlers.notify-oncall] table and the typed error payload
    (failed,) = [entry for entry in logs if entry["event"] == "order failed"]
    assert failed["channel"] == readme_module["handlers"]["notify-oncall"]["channel"]
    assert failed["error"] == "TimeoutError"
    assert stats.outcomes["ack"] == 1
