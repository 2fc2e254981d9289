"""What a worker run stored or quarantined can always be read back: a record holding a lone
surrogate, a body nested too deeply to parse. Through the real CLI (a new process, its real
stdout) and the console's HTTP routes, against a moto server and the store the worker wrote."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from ops_helpers import ENTRY, cli

from lambda_destinations.config import Settings
from lambda_destinations.console import ConsoleOptions, create_app
from lambda_destinations.simulate import failure_record

TOKEN = "odd-output-token"
DEEP = "[" * 50000 + "]" * 50000


def run_once(sqs: Any, url: str, env: dict[str, str], body: str) -> dict[str, Any]:
    """Send ``body`` to ``url`` and let a worker run (``run --once``) handle it."""
    sqs.send_message(QueueUrl=url, MessageBody=body)
    ran = cli("run", "--once", "--json", env={**env, "LAMBDA_DESTINATIONS_QUEUES": url})
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    summary: dict[str, Any] = json.loads(ran.stdout.splitlines()[-1])
    return summary


async def console_get(settings: Settings, path: str) -> tuple[int, str]:
    client = TestClient(TestServer(create_app(settings, ConsoleOptions(token=TOKEN))))
    await client.start_server()
    try:
        response = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        return response.status, await response.text()
    finally:
        await client.close()


def shown(*args: str, env: dict[str, str], code: int = 0) -> str:
    result = cli(*args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    return result.stdout


async def test_a_stored_lone_surrogate_is_shown_as_u_fffd(
    sqs,
    make_queue,
    cli_env,
    store_url: str,
    settings_for: Callable[..., Settings],
) -> None:
    # given: a valid failure record whose error message is a lone surrogate, stored by a worker
    url, _ = make_queue("surrogate")
    record = failure_record(random.Random(7), condition="RetriesExhausted")
    record["responsePayload"]["errorMessage"] = "\ud800"
    request_id = record["requestContext"]["requestId"]
    env = {**cli_env, "LAMBDA_DESTINATIONS_STORE": store_url}
    ran = run_once(sqs, url, env, json.dumps(record))
    # stored once; moto's server now and then hands one message to two receives at once, and
    # the second delivery is then acknowledged as the duplicate it is
    assert ran["acked"] - ran["duplicates"] == 1
    assert ran["quarantined"] == ran["retried"] == 0

    # when: it is read back every way there is
    text = shown("failures", "show", request_id, env=env)
    whole = json.loads(shown("failures", "show", request_id, "--json", env=env))
    result_text = shown("result", request_id, env=env, code=1)  # 1: the invocation failed
    result = json.loads(shown("result", request_id, "--json", env=env, code=1))
    settings = settings_for(store=store_url)
    page_status, page = await console_get(settings, f"/failures/{request_id}:RetriesExhausted")
    api_status, api = await console_get(settings, f"/api/invocations/{request_id}")

    # then: each shows U+FFFD where the surrogate is
    assert '"errorMessage": "\ufffd"' in text
    assert whole["response_payload"]["errorMessage"] == "\ufffd"
    assert '"errorMessage": "\ufffd"' in result_text
    assert result["error"]["message"] == result["response"]["errorMessage"] == "\ufffd"
    assert page_status == 200
    assert "\ufffd" in page
    assert api_status == 200
    assert json.loads(api)["response"]["errorMessage"] == "\ufffd"


async def test_a_body_nested_too_deeply_is_shown_as_it_is(
    sqs, make_queue, cli_env, settings_for: Callable[..., Settings]
) -> None:
    # given: a body nested too deeply to decode, quarantined by a worker (store and DLQ)
    url, dlq = make_queue("deep")
    assert dlq is not None
    assert run_once(sqs, url, cli_env, DEEP)["quarantined"] == 1
    (row,) = json.loads(shown("quarantine", "list", "--json", env=cli_env))
    assert "nested too deeply" in row["reason"]

    # when: the quarantined message is shown in each view that shows bodies
    text = shown("quarantine", "show", str(row["id"]), env=cli_env)
    peeked = shown("dlq", "peek", dlq, "--body", env=cli_env)
    status, page = await console_get(settings_for(), "/quarantine")

    # then: each shows its first 64 Ki characters (the body is 100,000), saying where the
    # whole is, and that command's JSON holds the body as it was sent
    assert status == 200
    cut = f"{DEEP[:65536]}\n… cut: the first 65,536 of {len(DEEP):,} characters; "
    whole = f"quarantine show {row['id']} --json prints it whole"
    peek_whole = f"dlq peek {dlq.rsplit('/', 1)[1]} --body --json prints it whole"
    for shown_as, where in ((text, whole), (page, whole), (peeked, peek_whole)):
        assert DEEP not in shown_as
        assert cut in shown_as
        assert where in shown_as
    assert (
        json.loads(shown("quarantine", "show", str(row["id"]), "--json", env=cli_env))["body"]
        == DEEP
    )
    (peeked_whole,) = json.loads(shown("dlq", "peek", dlq, "--body", "--json", env=cli_env))
    assert peeked_whole["body"] == DEEP


# A function's error text that would drive the terminal (ESC, CR) and reorder what is read
# around it (U+202E reverses the rest of the line, U+2066..U+2069 isolate a run), then text
# whose invisible joiners belong to it: a family emoji (ZWJ) and a Persian word (ZWNJ).
SPOOF = "bad \u202etxt.exe\u2069 \x1b[2J\rok \u2066x\u2069 \u200e\u061c"
KEPT = "\U0001f468\u200d\U0001f469 \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
SPELLED = "bad \\u202etxt.exe\\u2069 \\x1b[2J\\x0dok \\u2066x\\u2069 \\u200e\\u061c"


def _unshown(text: str) -> list[str]:
    return [c for c in "\x1b\r\u202e\u2066\u2069\u200e\u061c" if c in text]


def test_stored_controls_and_bidi_controls_are_spelled_out_in_text_and_exact_in_json(
    tmp_path,
) -> None:
    # given: a failure whose error message holds them, and a quarantined message whose
    # reason and body do
    from ops_helpers import failure_body, row_of, seed_sync

    from lambda_destinations.store import QuarantineRow, Store

    store_url = f"sqlite:///{tmp_path / 'spoof.db'}"
    body, record = failure_body(3, error=("TimeoutError", f"{SPOOF} {KEPT}", "python"))
    seed_sync(store_url, [row_of(body)])
    request_id = record["requestContext"]["requestId"]

    async def quarantine() -> None:
        async with Store.from_url(store_url) as store:
            await store.save_quarantine(
                QuarantineRow("https://sqs/q", "m-1", json.dumps({"x": SPOOF}), {}, SPOOF, 1)
            )

    import asyncio

    asyncio.run(quarantine())
    env = {"LAMBDA_DESTINATIONS_STORE": store_url}

    # when: each text view of them, and the JSON ones
    texts = {
        "result": shown("result", request_id, env=env, code=1),
        "failures show": shown("failures", "show", request_id, env=env),
        "failures list": shown("failures", "list", env=env),
        "quarantine list": shown("quarantine", "list", env=env),
        "quarantine show": shown("quarantine", "show", "1", env=env),
    }
    result = json.loads(shown("result", request_id, "--json", env=env, code=1))
    (listed,) = json.loads(shown("quarantine", "list", "--json", env=env))

    # then: text spells each out where it stands (a table's cell folds CR as other white
    # space) and keeps the joiners; JSON is exact
    for view, text in texts.items():
        assert _unshown(text) == [], view
        assert (SPELLED.replace("\\x0d", " ") if "list" in view else SPELLED) in text, view
    for view in ("result", "failures show", "failures list"):
        assert KEPT in texts[view], view
    assert result["error"]["message"] == f"{SPOOF} {KEPT}"
    assert listed["reason"] == SPOOF


# What a terminal acts on that JSON may leave raw in a string: a C1 control (U+009B is a CSI
# to xterm, which reads C1 controls in UTF-8: "\u009b2J" clears the screen), DEL, and the bidi
# controls, which reorder the line (the line and paragraph separators break it).
RAW_IN_JSON = "a\x9b2Jb\x9d0;title\x9c \x7f \u202etxt.exe\u2069 \u2028\u2029 \u061c\u200e\u200f"


def test_json_output_spells_what_a_terminal_acts_on_as_escapes_of_the_same_value(
    tmp_path,
) -> None:
    # given: a failure whose error message, type and payload hold them (and text whose
    # joiners belong to it)
    from ops_helpers import failure_body, row_of, seed_sync

    body, record = failure_body(
        4, error=("Odd\u202eError", f"{RAW_IN_JSON} {KEPT}", "python"), payload={"x": RAW_IN_JSON}
    )
    seed_sync(f"sqlite:///{tmp_path / 'raw.db'}", [row_of(body)])
    env = {"LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'raw.db'}"}
    request_id = record["requestContext"]["requestId"]

    # when: each JSON view of it
    outputs = {
        "list --json": shown("failures", "list", "--json", env=env),
        "list --ndjson": shown("failures", "list", "--ndjson", env=env),
        "show --json": shown("failures", "show", request_id, "--json", env=env),
        "stats --json": shown("failures", "stats", "--json", env=env),
    }

    # then: none of them raw on stdout (they reached a terminal as they were), each read back
    # as the stored value, the joiners kept as they are
    for view, out in outputs.items():
        assert [c for c in out if c in RAW_IN_JSON and not c.isprintable()] == [], view
    (listed,) = json.loads(outputs["list --json"])
    assert listed == json.loads(outputs["list --ndjson"])
    assert listed["error_message"] == f"{RAW_IN_JSON} {KEPT}"
    assert KEPT in outputs["list --json"]
    whole = json.loads(outputs["show --json"])
    assert whole["request_payload"] == {"x": RAW_IN_JSON}
    assert json.loads(outputs["stats --json"])["groups"][0]["error_type"] == "Odd\u202eError"


async def test_a_record_of_the_year_1_shows_its_year_in_four_digits(tmp_path) -> None:
    # given: a failure whose own time is the first second of the year 1 (a wrong clock)
    from ops_helpers import failure_body, row_of, seed

    store_url = f"sqlite:///{tmp_path / 'year-1.db'}"
    _, record = failure_body(4)
    record["timestamp"] = "0001-01-01T00:00:00Z"
    await seed(store_url, [row_of(json.dumps(record))])
    request_id = record["requestContext"]["requestId"]
    env = {"LAMBDA_DESTINATIONS_STORE": store_url}

    # when: the text views of it, and the console's list
    texts = {
        "failures list": shown("failures", "list", env=env),
        "failures show": shown("failures", "show", request_id, env=env),
        "result": shown("result", request_id, env=env, code=1),
    }
    status, page = await console_get(Settings(store=store_url), "/failures")

    # then: each says 0001-01-01, as the JSON's ISO time does
    assert status == 200
    for view, text in {**texts, "console": page}.items():
        assert "0001-01-01 00:00:00" in text, view


async def test_failures_stats_counts_a_record_of_the_year_1_as_failures_list_finds_it(
    tmp_path,
) -> None:
    # given: a failure whose own time is the first second of the year 1 (a wrong clock)
    from ops_helpers import failure_body, row_of, seed

    store_url = f"sqlite:///{tmp_path / 'year-1.db'}"
    _, record = failure_body(4)
    record["timestamp"] = "0001-01-01T00:00:00Z"
    await seed(store_url, [row_of(json.dumps(record))])
    env = {"LAMBDA_DESTINATIONS_STORE": store_url}
    until = "0001-01-01T00:00:01Z"
    assert record["requestContext"]["requestId"] in shown(
        "failures", "list", "--until", until, env=env
    )

    # when: its statistics up to a second later, with no start: 24 hours before the until is
    # before the year 1 (before: "'0001-01-01T00:00:01+00:00' is too far from now", exit 2)
    counted = shown("failures", "stats", "--until", until, env=env)
    # and up to its own time, before which there is no time at all
    before = shown("failures", "stats", "--until", "0001-01-01", env=env)

    # then: the window starts at the year 1's first moment: the failure counted, and none before
    assert counted.startswith(
        "1 failure in 1 function, 0001-01-01 00:00:00 → 0001-01-01 00:00:01 UTC\n"
    ), counted
    assert before == "0 failures in 0 functions, 0001-01-01 00:00:00 → 0001-01-01 00:00:00 UTC\n"


# What a sender writes to forge a field of the views below: a line break, then a line that
# reads as the view's own.
FORGED_STATUS = "\nstatus       recovered"
FORGED_ATTRIBUTE = "\n  LambdaDestinations.Reason = none: all is well"


def _starting(text: str, start: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(start)]


def test_a_line_break_in_a_field_never_starts_a_line_of_its_own(
    sqs, make_queue, cli_env, tmp_path
) -> None:
    # given: a failure whose request id and error message end in a line that reads as the
    # failure's status, stored by a worker; and a message that is no record, its attribute
    # holding a line that reads as another attribute, quarantined by it to the DLQ
    url, dlq = make_queue("forged")
    assert dlq is not None
    record = failure_record(random.Random(5), condition="RetriesExhausted")
    request_id = f"req-forged{FORGED_STATUS}"
    record["requestContext"]["requestId"] = request_id
    record["responsePayload"]["errorMessage"] = f"boom{FORGED_STATUS}"
    env = {**cli_env, "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'forged.db'}"}
    assert run_once(sqs, url, env, json.dumps(record))["acked"] >= 1
    attributes = {"Attr": {"DataType": "String", "StringValue": f"v{FORGED_ATTRIBUTE}"}}
    sqs.send_message(QueueUrl=url, MessageBody="not json", MessageAttributes=attributes)
    assert run_once(sqs, url, env, "{}")["quarantined"] == 2

    # when: each view of them for people
    key = f"{request_id}:RetriesExhausted"
    failure = shown("failures", "show", key, env=env)
    result = shown("result", request_id, env=env, code=1)
    quarantined = json.loads(shown("quarantine", "list", "--json", env=env))
    (with_attribute,) = [q for q in quarantined if "not JSON" in q["reason"]]
    quarantine = shown("quarantine", "show", str(with_attribute["id"]), env=env)
    peeked = shown("dlq", "peek", dlq, "--body", env=env)

    # then: a field's further lines stand under its first, never at a label's place
    assert _starting(failure, "status") == ["status       open"]
    assert "request id   req-forged\n             status       recovered\n" in failure
    error_type = record["responsePayload"]["errorType"]
    assert f"error        {error_type}: boom\n             status       recovered\n" in failure
    assert _starting(result, "status") == ["status      open"]
    for text in (quarantine, peeked):
        assert "  Attr = v\n           LambdaDestinations.Reason = none: all is well" in text
        assert _starting(text, "  LambdaDestinations.Reason = none") == []


# An error message with characters Latin-1 has (é) and has not (the emoji, the Chinese).
NOT_LATIN_1 = "café \U0001f4a5 错误"


def test_a_stdout_in_an_encoding_without_some_characters_gets_escapes_not_a_traceback(
    tmp_path,
) -> None:
    # given: a failure whose error message Latin-1 cannot all encode, and stdout in Latin-1
    # (a terminal in an ISO 8859 locale, or PYTHONIOENCODING=latin-1)
    from ops_helpers import failure_body, row_of, seed_sync

    store_url = f"sqlite:///{tmp_path / 'latin-1.db'}"
    body, record = failure_body(3, error=("TimeoutError", NOT_LATIN_1, "python"))
    seed_sync(store_url, [row_of(body)])
    request_id = record["requestContext"]["requestId"]
    env = {**os.environ, "LAMBDA_DESTINATIONS_STORE": store_url, "PYTHONIOENCODING": "latin-1"}

    def latin_1(*args: str) -> str:
        done = subprocess.run([*ENTRY, *args], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert b"Traceback" not in done.stderr, done.stderr.decode()
        return done.stdout.decode("latin-1")

    # when: the text views of it, its summary (whose line has an arrow) and its JSON
    table = latin_1("failures", "list")
    show = latin_1("failures", "show", request_id)
    stats = latin_1("failures", "stats")
    listed = json.loads(latin_1("failures", "list", "--json"))
    (line,) = latin_1("failures", "list", "--ndjson").splitlines()
    whole = json.loads(latin_1("failures", "show", request_id, "--json"))

    # then: text writes what Latin-1 has as it is and the rest as escapes; JSON stays JSON of
    # the same values (a UnicodeEncodeError's traceback and exit 1 before)
    for text in (table, show):
        assert "café \\U0001f4a5 \\u9519\\u8bef" in text
    assert " \\u2192 " in stats
    assert listed[0]["error_message"] == json.loads(line)["error_message"] == NOT_LATIN_1
    assert whole["response_payload"]["errorMessage"] == NOT_LATIN_1


# Characters str.splitlines breaks a line at, which are no line feed: the line and paragraph
# separators, NEL, the file, group and record separators, vertical tab, form feed, CR.
NOT_LINE_FEEDS = "a\u2028b\u2029c\x85d\x1ce\x1df\x1eg\x0bh\x0ci\rj"


def test_failures_show_breaks_a_payload_line_at_line_feeds_only(store_url: str) -> None:
    # given: a failure whose error type and request payload (a JSON string) hold characters
    # that other texts break lines at
    from ops_helpers import failure_body, row_of, seed_sync

    _, record = failure_body(11, payload=f"text{NOT_LINE_FEEDS}payload")
    record["responsePayload"]["errorType"] = f"Odd{NOT_LINE_FEEDS}Error"
    seed_sync(store_url, [row_of(json.dumps(record))])
    request_id = record["requestContext"]["requestId"]

    # when: it is shown as text
    text = shown("failures", "show", request_id, env={"LAMBDA_DESTINATIONS_STORE": store_url})

    # then: each payload's line stays one line, as the error's field does (before: each such
    # character broke it, and the response shown was no longer the JSON it is:
    # `"errorType": "Odda`, then `  b`, ...), its controls spelled out
    lines = text.split("\n")
    spelled = "a\u2028b\u2029c\\x85d\\x1ce\\x1df\\x1eg\\x0bh\\x0ci\\x0dj"
    assert f"error        Odd{spelled}Error: Task timed out" in lines
    assert f"  text{spelled}payload" in lines
    (error_type,) = [line for line in lines if '"errorType": ' in line]
    assert error_type.startswith('    "errorType": "Odda\u2028b\u2029c\\x85d\\u001ce')
    assert error_type.endswith('i\\rjError",')
