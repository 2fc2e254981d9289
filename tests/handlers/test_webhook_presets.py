"""The webhook presets of Microsoft Teams (a Workflows webhook) and Discord, through the worker
against a local HTTP server: their bodies and digests, Discord's 429, a retired Teams connector
refused at start, and the URL's token kept out of every log line; Slack's escapes. Their limits
are tested with the other presets' (test_webhook_handler)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from handler_helpers import failure_record, send_records
from structlog.testing import capture_logs
from test_webhook_handler import Receiver, asking_to_wait, drain, hook_settings

from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers.storm import Digest
from lambda_destinations.handlers.webhook import WebhookHandler, build

DISCORD_TOKEN = "dIsCoRd-T0ken-a1b2c3d4e5f6"
TEAMS_SIG = "TeAmS-s1g-9f8e7d6c5b4a"
START = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
DIGEST = Digest(
    handler="hook",
    function_name="orders-api",
    error_type="TimeoutError",
    window=300,
    window_start=START,
    window_end=START + dt.timedelta(minutes=5),
    total=43,
    send_first=3,
    first_at=START,
    last_at=START + dt.timedelta(minutes=4),
)
DIGEST_TEXT = (
    "40 more failures of orders-api / TimeoutError in the 5 minutes from 2026-12-01 10:00 UTC"
)


def discord_url(receiver: Receiver) -> str:
    """A Discord-shaped webhook URL on ``receiver``: its token is the last path segment."""
    return receiver.url.split("/services/")[0] + f"/api/webhooks/1234567890/{DISCORD_TOKEN}"


def teams_url(receiver: Receiver) -> str:
    """A Workflows-shaped webhook URL on ``receiver``: its signature is the query's ``sig``."""
    return (
        receiver.url.split("/services/")[0]
        + "/workflows/0a1b/triggers/manual/paths/invoke?api-version=2016-06-01"
        + f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={TEAMS_SIG}"
    )


def card(text: str) -> dict[str, Any]:
    """The Teams message the preset sends for ``text``."""
    content = {
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": content}
        ],
    }


async def post_digest(hook: WebhookHandler, digest: Digest = DIGEST) -> None:
    """The digest body ``hook`` sends for ``digest``, posted as its send_digest posts it."""
    log = structlog.get_logger()
    with capture_logs():
        await hook.post(hook.digest_body.render(digest.fields(), log), key="digest", log=log)


# Each preset: its URL on the receiver, what its service answers a message it took (a Workflows
# webhook 202 Accepted, Discord with wait=true 200 and the message), and its body for a text.
PRESETS: dict[str, tuple[Callable[[Receiver], str], int, Callable[[str], Any]]] = {
    # Slack's: &, < and > as Slack's escapes (before, "<!channel>" pinged the channel)
    "slack": (
        lambda receiver: receiver.url,
        200,
        lambda text: {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")},
    ),
    "teams": (teams_url, 202, card),
    "discord": (
        discord_url,
        200,
        lambda text: {"content": text, "allowed_mentions": {"parse": []}},
    ),
}


@pytest.mark.parametrize("preset", PRESETS)
async def test_a_preset_sends_its_services_body_for_a_record_and_a_digest(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    handler_settings: Callable[..., Settings],
    preset: str,
) -> None:
    # given: a record whose error message would ping everyone in a Discord or Slack channel,
    # and a digest's error type that would in Slack
    hook_url, answer, body = PRESETS[preset]
    url, _ = make_queue(f"hook-{preset}")
    error = "@everyone look @here <!channel> & <https://evil.example|log in>"
    send_records(sqs, url, [failure_record("orders-api", message=error)])
    receiver.script = [answer, answer]
    options = {"preset": preset, "url": hook_url(receiver)}
    message = "**{function_name}** failed: {error_message}"
    settings = hook_settings(endpoint_url, url, sqlite_url, **options, message=message)

    # when: a record, and a digest
    stats = await drain(settings)
    digest = dataclasses.replace(DIGEST, error_type="<!everyone>")
    await post_digest(build("hook", options, handler_settings("q")), digest)

    # then: the record done, and each text in the service's body (Discord's parses no mention)
    assert stats.outcomes["ack"] == 1
    record, digest_body = (request["body"] for request in receiver.requests)
    assert record == body(f"**orders-api** failed: {error}")
    assert digest_body == body(DIGEST_TEXT.replace("TimeoutError", "<!everyone>"))


def test_a_discord_url_waits_for_the_message_to_be_saved(
    receiver: Receiver, handler_settings: Callable[..., Settings]
) -> None:
    # wait=true: Discord then answers a message it did not save with its refusal, not 204. The
    # URL's own query is kept, and so is a wait of its own.
    given = discord_url(receiver)
    plain = build("hook", {"preset": "discord", "url": given}, handler_settings("q"))
    threaded = build(
        "hook", {"preset": "discord", "url": f"{given}?thread_id=42"}, handler_settings("q")
    )
    told = build("hook", {"preset": "discord", "url": f"{given}?wait=false"}, handler_settings("q"))

    assert plain.url == f"{given}?wait=true"
    assert threaded.url == f"{given}?thread_id=42&wait=true"
    assert told.url == f"{given}?wait=false"


# Discord's 429 answers (https://discord.com/developers/docs/topics/rate-limits): the header in
# whole seconds, the JSON's retry_after in seconds with decimals; and one without the header.
DISCORD_429 = {
    "header and JSON": ("2", 1.57, 2.0),
    "JSON alone": (None, 1.2, 1.2),
}


@pytest.mark.parametrize("case", DISCORD_429)
async def test_discords_429_is_waited_as_it_asks(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    case: str,
) -> None:
    header, retry_after, waited = DISCORD_429[case]
    # given: a webhook rate-limited once, answering as Discord does
    url = asking_to_wait(sqs, make_queue, receiver, 429, header)
    receiver.refusal_text = json.dumps(
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
    )
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        preset="discord",
        url=discord_url(receiver),
        worker={"handler_retry_max_delay": 5.0},
    )

    # when
    stats = await drain(settings)

    # then: sent again in process, no sooner than asked (the server's own clock)
    assert stats.outcomes["ack"] == 1
    first, second = receiver.requests
    assert second["at"] - first["at"] >= waited


@pytest.mark.parametrize(
    "connector",
    [
        "https://contoso.webhook.office.com/webhookb2/0a1b@2c3d/IncomingWebhook/S3CR3TPATH/4e5f",
        "https://outlook.office.com/webhook/0a1b@2c3d/IncomingWebhook/S3CR3TPATH/4e5f",
    ],
)
@pytest.mark.parametrize("setting", ["url", "url_env"])
def test_a_retired_teams_connector_url_stops_the_start(
    connector: str,
    setting: str,
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", connector)
    value = connector if setting == "url" else "TEAMS_WEBHOOK_URL"

    with pytest.raises(ConfigError) as info:
        build("teams", {"preset": "teams", setting: value}, handler_settings("q"))

    named = "url" if setting == "url" else "url_env: TEAMS_WEBHOOK_URL"
    host = re.match(r"https://[^/]+", connector)
    assert host is not None
    assert str(info.value) == (
        f"handlers.teams.{named}: {host[0]} is an Office 365 connector (Incoming Webhook), which "
        'Microsoft has retired: in the Teams channel, open Workflows, create a flow from "Send '
        'webhook alerts to a channel" and give the handler its webhook URL'
    )


@pytest.mark.parametrize("preset", ["teams", "discord"])
async def test_the_webhook_url_s_token_is_in_no_log_line(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    preset: str,
) -> None:
    # given: the URL from the environment, and a receiver that refuses the first record quoting
    # the request (path and query), as Express's "Cannot POST /path" does
    token = TEAMS_SIG if preset == "teams" else DISCORD_TOKEN
    monkeypatch.setenv(
        "HOOK_URL", teams_url(receiver) if preset == "teams" else discord_url(receiver)
    )
    url, _ = make_queue(f"hook-{preset}-secret")
    send_records(sqs, url, [failure_record("orders-api"), failure_record("billing")])
    receiver.script = [404]
    receiver.echo = True
    settings = hook_settings(endpoint_url, url, sqlite_url, preset=preset, url_env="HOOK_URL")

    # when
    with capture_logs() as logs:
        stats = await drain(settings)

    # then: one sent, one quarantined with the answer quoted; the token nowhere
    assert (stats.outcomes["ack"], stats.outcomes["quarantine"]) == (1, 1)
    assert json.loads(receiver.requests[0]["raw"])  # the server did see the request
    logged = json.dumps(logs, default=str)
    assert "webhook sent" in logged
    assert "answered 404: Cannot POST" in logged
    assert token not in logged


async def test_a_pagerduty_event_of_a_record_without_function_has_a_source(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a message of a function's dead-letter queue, which names no function
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    url, _ = make_queue("hook-pd-legacy")
    attributes = {
        "RequestID": {"DataType": "String", "StringValue": "3f1e2d4c-0000-4000-8000-00000000abcd"},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "Task timed out after 3.00 seconds"},
    }
    sqs.send_message(QueueUrl=url, MessageBody='{"orderId": 7}', MessageAttributes=attributes)
    options = {"preset": "pagerduty", "url": receiver.url, "routing_key_env": "PD_KEY"}
    settings = hook_settings(endpoint_url, url, sqlite_url, **options)

    # when
    stats = await drain(settings)

    # then: the Events API requires payload.source, a string (before, null: refused with 400,
    # the message quarantined and no one paged); the queue it came from names it; optional
    # fields with nothing to say are left out rather than null
    assert stats.outcomes["ack"] == 1
    (request,) = receiver.requests
    payload = request["body"]["payload"]
    assert payload["source"] == url.rsplit("/", 1)[-1]
    assert all(value is not None for value in payload.values()), payload
    assert payload["class"] == "200"
