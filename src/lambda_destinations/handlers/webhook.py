"""The built-in ``webhook`` handler: POST a JSON body built from a record's fields to a URL.

::

    [handlers.oncall-hook]
    type = "webhook"
    url_env = "ONCALL_HOOK_URL"          # or url = "https://hooks.example.com/lambda"
    body = { text = "{function_name} failed: {error_type}", payload = "{payload}" }
    headers = { "X-Team" = "orders" }
    headers_env = { Authorization = "ONCALL_HOOK_AUTH" }   # values from the environment
    secret_env = "ONCALL_HOOK_SECRET"    # HMAC-SHA256 signature header
    timeout = "10s"
    in_doubt = "resend"                  # or "skip"

    [handlers.slack]
    type = "webhook"
    preset = "slack"                     # Slack incoming webhook: {"text": message}
    url_env = "SLACK_WEBHOOK_URL"

    [handlers.pagerduty]
    type = "webhook"
    preset = "pagerduty"                 # PagerDuty Events API v2: a trigger event
    routing_key_env = "PAGERDUTY_ROUTING_KEY"

    [handlers.teams]
    type = "webhook"
    preset = "teams"                     # a Teams Workflows webhook: an Adaptive Card
    url_env = "TEAMS_WEBHOOK_URL"

    [handlers.discord]
    type = "webhook"
    preset = "discord"                   # a Discord webhook: {"content": message}, no pings
    url_env = "DISCORD_WEBHOOK_URL"

``body`` is JSON whose strings are templates over the record's fields (as in ``sms`` and
``email``); a string that is exactly one field, such as ``"{payload}"`` or ``"{invoke_count}"``,
keeps that field's JSON value. Every request carries an ``Idempotency-Key`` derived from the
handler and the record key, so a receiver can drop a duplicate. 2xx completes; 408, 429, 5xx
and connection errors are retried, never sooner than a ``Retry-After`` header (seconds or an
HTTP date) asks; any other status quarantines the message with the status and the start of the
answer; redirects are not followed. A request whose answer never came
(timeout, connection lost after sending, or cut off by the worker) is in doubt, as is a
gateway's 504 (Cloudflare's 524), whose upstream's answer never came:
``in_doubt = "resend"`` (the default) sends it again, with the same idempotency key; ``"skip"``
records it as done and logs it.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import math
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, parse_qs, unquote, urljoin, urlsplit

import aiohttp
import yarl
from pydantic import Field, field_validator, model_validator

from lambda_destinations import environment
from lambda_destinations._json import loads, utf8
from lambda_destinations._proxy import Proxy, proxy_for, proxy_problem, proxy_refusal
from lambda_destinations._text import cut
from lambda_destinations._urls import (
    BRACKET_UNCLOSED,
    CERT_FOR_ANOTHER_NAME,
    CERT_HAS_EXPIRED,
    CERT_NOT_YET_VALID,
    IPV6_BRACKETS,
    NOT_TLS,
    ascii_domain,
    check_port,
    host_name_problem,
    is_host,
    unbracketed_ipv6,
)
from lambda_destinations.errors import ConfigError, PermanentError, TransientError
from lambda_destinations.handlers import storm
from lambda_destinations.handlers.in_doubt import CallUnderWay, InDoubt, sending
from lambda_destinations.handlers.templates import (
    RECORD_FIELDS,
    CertBundle,
    Duration,
    NonBlank,
    SafeFormatter,
    Template,
    cut_to_fit,
    parse_options,
    record_fields,
    trusting,
)
from lambda_destinations.redact import mask_secrets, url_origin, url_secrets
from lambda_destinations.times import http_date

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.base import HandlerContext
    from lambda_destinations.handlers.jobs import JobContext
    from lambda_destinations.schemas import DecodedMessage

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_HEADER = "X-Lambda-Destinations-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_MESSAGE = "{summary:.1000}"  # a preset's text
# PagerDuty Events API v2 refuses an event whose payload.summary or dedup_key is longer.
PAGERDUTY_SUMMARY_MAX = 1024
PAGERDUTY_DEDUP_MAX = 255
# Slack truncates a message's `text` over 40,000 characters, incoming webhooks included
# (https://api.slack.com/changelog/2018-04-truncating-really-long-messages), with no sign of
# it in the channel: the preset cuts it with an ellipsis first. The preset sends no blocks, so
# the 3,000 characters of a section block's text
# (https://api.slack.com/reference/block-kit/blocks#section) do not apply.
SLACK_TEXT_MAX = 40_000
_PART_OF_ENTITY = re.compile(r"&(?:a|am|amp|l|lt|g|gt)?…\Z")  # an escape cut before its ";"
# Discord refuses a message whose `content` is longer (400: the record would be quarantined
# unsent; https://discord.com/developers/docs/resources/webhook#execute-webhook): the preset
# cuts it with an ellipsis first.
DISCORD_CONTENT_MAX = 2_000
# A Teams Workflows webhook answers 202 Accepted, then its flow posts the card; a message over
# about 28 KB fails there ("Request Entity too large",
# https://learn.microsoft.com/en-us/connectors/teams/#known-issues-and-limitations-with-actions),
# and nothing tells the sender. Teams counts a bot message's size in UTF-16
# (https://learn.microsoft.com/en-us/microsoftteams/platform/bots/how-to/format-your-bot-messages),
# twice the bytes of ASCII text: the preset counts so too, the stricter way, and cuts its text so
# that the whole body stays within this many bytes.
TEAMS_MESSAGE_MAX = 28_000
TEAMS_CARD_VERSION = "1.4"  # TextBlock and its wrap are 1.0: any version Teams renders shows them
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
# A body string that is one field alone, keys included ("{payload.orderId}"), no spec.
_ONE_FIELD = re.compile(r"\{([^{}!:]+)\}")
_RETRIED_STATUSES = frozenset({408, 429})
# A gateway's answer that its upstream took the request and gave no answer in time (504;
# Cloudflare's 524): the receiver may have acted, as when the handler's own timeout runs out.
_UPSTREAM_TIMEOUTS = frozenset({504, 524})
# What to change when the receiver refuses for good, by its status (the answer says more);
# {body}: the setting that makes the body (a preset's handler has message, not body).
_BODY_REFUSED = "the receiver refused the body: check the handler's {body} against what it expects"
_CREDENTIALS_REFUSED = (
    "the receiver refused the credentials: check the handler's headers, headers_env, "
    "secret_env or the URL's user:password"
)
_NO_PATH = "the receiver has no such path: check the handler's url"
_REFUSALS = {
    400: _BODY_REFUSED,
    401: _CREDENTIALS_REFUSED,
    403: _CREDENTIALS_REFUSED,
    404: _NO_PATH,
    405: "the receiver takes no POST there: check the handler's url",
    410: _NO_PATH,
    413: "the body is too large for the receiver: shorten the handler's {body}",
    415: "the receiver takes no JSON there: check the handler's url",
    422: _BODY_REFUSED,
}
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}")  # RFC 9110 delay-seconds, within reason
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_HEADER_VALUE_REFUSED = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but tab
_NOT_A_NAME = "not a header name: use letters, digits and !#$%&'*+-.^_`|~ only"
_ONE_LINE = "a header value is one line of text, without control characters"
_ANSWER_SHOWN = 200  # characters of a refusing answer kept in the quarantine reason
# Bytes of a refusing answer read for that reason, and how long to wait for them: an answer may
# be gigabytes, slow or cut short; the rest is never read.
_ANSWER_READ = 4096
_ANSWER_WAIT = 2.0
_SAID = 60  # bytes of an answer that is not HTTP shown, so that a reader can tell what answered

GENERIC_BODY: dict[str, Any] = {
    "summary": "{summary}",
    "function_name": "{function_name}",
    "function_arn": "{function_arn}",
    "condition": "{condition}",
    "error_type": "{error_type}",
    "error_message": "{error_message}",
    "request_id": "{request_id}",
    "key": "{key}",
    "timestamp": "{timestamp}",
    "invoke_count": "{invoke_count}",
}
GENERIC_DIGEST: dict[str, Any] = {
    "text": storm.DEFAULT_DIGEST,
    "count": "{count}",
    "function_name": "{function_name}",
    "error_type": "{error_type}",
    "window_start": "{window_start}",
    "window_end": "{window_end}",
}


def slack_escaped(text: str) -> str:
    """A record's value as Slack's mrkdwn shows it as written: ``&``, ``<`` and ``>`` as the
    entities Slack reads them from (HTML's, quotes left), so that its text cannot ping
    (``<!channel>``, ``<@U024BE7LH>``) or make a link (``<https://…|log in>``); a template's
    own text can."""
    return html.escape(text, quote=False)


def slack_bodies(message: NonBlank, digest: NonBlank) -> tuple[Any, Any]:
    """Slack incoming webhooks take ``{"text": ...}`` (mrkdwn)."""
    return {"text": message}, {"text": digest}


def slack_cut(text: str, limit: int) -> str:
    """:func:`cut`, never inside one of :func:`slack_escaped`'s entities, which Slack would
    show half-written ("&lt")."""
    shorter = cut(text, limit)
    return shorter if shorter == text else _PART_OF_ENTITY.sub("…", shorter)


def text_fit(key: str, limit: int, cutter: Callable[[str, int], str] = cut) -> Callable[[Any], Any]:
    """A preset's fit: the body with its text under ``key`` cut with an ellipsis to ``limit``
    characters, the service's own limit."""

    def fit(body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get(key), str):
            return {**body, key: cutter(body[key], limit)}
        return body

    return fit


def discord_bodies(message: NonBlank, digest: NonBlank) -> tuple[Any, Any]:
    """Discord webhooks take ``{"content": ...}`` (Markdown); ``allowed_mentions`` with nothing
    to parse, so that a record's text cannot ping ``@everyone``, a role or a user."""
    no_pings: dict[str, list[str]] = {"parse": []}
    return (
        {"content": message, "allowed_mentions": no_pings},
        {"content": digest, "allowed_mentions": no_pings},
    )


def discord_waits(url: str) -> str:
    """``url`` with ``wait=true`` unless its query sets ``wait``: without it, Discord answers
    204 to a message it did not save, and a refusal goes unsaid."""
    parts = urlsplit(url)
    if "wait" in parse_qs(parts.query, keep_blank_values=True):
        return url
    return parts._replace(query=f"{parts.query}&wait=true" if parts.query else "wait=true").geturl()


def discord_retry_after(text: str) -> float | None:
    """The seconds a Discord 429's JSON asks to wait (``retry_after``, a float), rounded up;
    None when the answer holds none."""
    try:
        value = loads(text).get("retry_after")
    except (ValueError, RecursionError, AttributeError):  # not JSON (a proxy's page), no object
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(max(0, math.ceil(value)))


def teams_message(text: Any) -> dict[str, Any]:
    """A Teams message of one Adaptive Card showing ``text``, as a Workflows webhook's flow
    ("Send webhook alerts to a channel") posts it."""
    card = {
        "type": "AdaptiveCard",
        "version": TEAMS_CARD_VERSION,
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "content": card}]}


def teams_bodies(message: NonBlank, digest: NonBlank) -> tuple[Any, Any]:
    """A Teams Workflows webhook takes a message with an Adaptive Card attachment."""
    return teams_message(message), teams_message(digest)


def teams_fit(body: Any) -> Any:
    """A Teams message within TEAMS_MESSAGE_MAX bytes counted in UTF-16, its text cut with an
    ellipsis; each character is 2 bytes at least, so a longer text than half as many
    characters never fits."""
    try:
        text = body["attachments"][0]["content"]["body"][0]["text"]
    except (KeyError, IndexError, TypeError):
        return body
    if not isinstance(text, str):
        return body
    fitted = cut_to_fit(
        cut(text, TEAMS_MESSAGE_MAX // 2),
        lambda shorter: _utf16_size(teams_message(shorter)) <= TEAMS_MESSAGE_MAX,
    )
    return teams_message(fitted)


def _utf16_size(body: Any) -> int:
    """Bytes of ``body``'s JSON, as sent, in UTF-16."""
    return len(utf8(body).decode().encode("utf-16-le"))


def retired_teams_connector(url: str) -> bool:
    """Whether ``url`` is an Office 365 connector's (Teams' Incoming Webhook), which Microsoft
    retired: ``*.webhook.office.com/webhookb2/…``, ``outlook.office.com/webhook/…``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "webhook.office.com" or host.endswith(".webhook.office.com"):
        return True
    legacy = ("outlook.office.com", "outlook.office365.com")
    return host in legacy and parts.path.lower().startswith("/webhook")


def pagerduty_bodies(message: NonBlank, digest: NonBlank, severity: str) -> tuple[Any, Any]:
    """PagerDuty Events API v2 trigger events; the routing key is added when sending."""
    record = {
        "event_action": "trigger",
        "dedup_key": "{key}",
        "payload": {
            "summary": message,
            # Required, a string: a function's dead-letter message names no function.
            "source": FirstField("function_arn", "queue"),
            "severity": severity,
            "component": "{function_name}",
            "group": "{region}",
            "class": "{error_type}",
            "custom_details": {
                "request_id": "{request_id}",
                "condition": "{condition}",
                "error_message": "{error_message:.1000}",
                "invoke_count": "{invoke_count}",
                "queue": "{queue}",
            },
        },
    }
    summary = {
        "event_action": "trigger",
        "dedup_key": "digest:{handler}:{function_name}:{error_type}:{window_start}",
        "payload": {
            "summary": digest,
            "source": "{function_name}",
            "severity": severity,
            "custom_details": {
                "count": "{count}",
                "window_start": "{window_start}",
                "window_end": "{window_end}",
            },
        },
    }
    return record, summary


def pagerduty_fit(body: Any) -> Any:
    """A PagerDuty event within the Events API v2 limits, which refuses a longer one (400:
    the message quarantined, no one paged): the summary cut with an ellipsis, a long
    ``dedup_key`` (a digest's holds the error type) replaced by its SHA-256, as stable."""
    if not isinstance(body, dict):
        return body
    payload = body.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("summary"), str):
        # An optional field the record has no value for is left out, not sent as null.
        present = {k: v for k, v in payload.items() if k not in _PAGERDUTY_OPTIONAL or v}
        summary = cut(payload["summary"], PAGERDUTY_SUMMARY_MAX)
        body = {**body, "payload": {**present, "summary": summary}}
    key = body.get("dedup_key")
    if isinstance(key, str) and len(key) > PAGERDUTY_DEDUP_MAX:
        body = {**body, "dedup_key": hashlib.sha256(key.encode()).hexdigest()}
    return body


_PAGERDUTY_OPTIONAL = frozenset({"component", "group", "class"})


class FirstField:
    """A body value that is the first of ``names`` with a value, as text: a field its service
    requires (PagerDuty's ``payload.source``) when a record has no value for the first."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def render(self, fields: Mapping[str, Any]) -> str:
        found = (fields.get(name) for name in self.names)
        return next((str(value) for value in found if value not in (None, "")), "")


class WebhookOptions(storm.NotifierOptions):
    """The ``[handlers.NAME]`` table of a ``webhook`` handler."""

    preset: Literal["slack", "pagerduty", "teams", "discord"] | None = None
    url: str | None = None
    url_env: str | None = None
    body: Any = None
    digest_body: Any = None
    message: str = DEFAULT_MESSAGE
    digest_message: str = storm.DEFAULT_DIGEST
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict)
    secret_env: str | None = None
    signature_header: str = SIGNATURE_HEADER
    idempotency_header: str = IDEMPOTENCY_HEADER
    routing_key_env: str | None = None
    severity: Literal["critical", "error", "warning", "info"] = "error"
    timeout: Duration = Field(default=10.0, gt=0, le=300)
    cert_bundle: CertBundle | None = None  # loaded at start

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @model_validator(mode="after")
    def _destination(self) -> WebhookOptions:
        if self.url and self.url_env:
            raise ValueError("give url or url_env, not both")
        if self.preset == "pagerduty" and not self.routing_key_env:
            raise ValueError('preset "pagerduty" needs routing_key_env (its integration key)')
        if not (self.url or self.url_env or self.preset == "pagerduty"):
            raise ValueError("give url (or url_env, to read it from the environment)")
        if self.preset and (self.body is not None or self.digest_body is not None):
            raise ValueError(f'preset "{self.preset}" fills body itself: use message instead')
        return self


def check_url(value: str) -> str:
    """``value`` if it is an http(s) URL that can be sent to; ValueError naming no part of it
    but its host (its path or query may be a token). A host no request can reach (``a..b``, a
    space, a control character, ``127.1``, a name over 253 characters) or port 0 would fail
    every POST, each retried as if it might pass; a URL aiohttp cannot read
    (``http://[::1]x/``, a backslash before the path) raised a traceback at start."""
    scheme = value.partition("://")[0].lower()
    if scheme in ("http", "https") and unbracketed_ipv6(value):
        raise ValueError(IPV6_BRACKETS.format(example=f"{scheme}://[::1]:8080/…"))
    try:
        parts = urlsplit(value)
    except ValueError:  # urllib's "Invalid IPv6 URL"
        raise ValueError(BRACKET_UNCLOSED) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be http:// or https:// with a host")
    check_port(value)
    if parts.port == 0:
        raise ValueError("the port is not a number from 1 to 65535")
    if not is_host(parts.hostname):
        raise ValueError("the URL's host is not a host name or an IP address")
    # A name longer than DNS holds, or digits and dots that are no IPv4 address (127.1), which
    # aiohttp refuses for every POST ("InvalidUrlClientError"): the host is said, as a log does.
    if (problem := host_name_problem(ascii_domain(parts.hostname))) is not None:
        raise ValueError(f"the URL cannot be sent: {problem}")
    try:
        yarl.URL(value)  # what aiohttp sends to: it reads some URLs urllib takes otherwise
    except ValueError as exc:
        why = mask_secrets(str(exc), url_secrets(value)).rstrip(".")
        raise ValueError(
            f"the URL cannot be sent ({why}): write it as scheme://host:port/path (an IPv6 "
            "host as [::1]:8080, a backslash as %5C)"
        ) from None
    return value


def _one_authorization(url: str, headers: Mapping[str, str], where: str) -> None:
    """Refuse credentials in the URL together with an Authorization header: aiohttp sends the
    URL's ``user:password@`` as basic auth, and refuses a request that has both, so every POST
    would fail; so would credentials outside Latin-1. Names neither the password nor the
    header's value."""
    parts = urlsplit(url)
    if (parts.username or parts.password) and any(h.lower() == "authorization" for h in headers):
        raise ConfigError(
            f"{where}: the URL has credentials (user:password@), sent as basic auth, and an "
            "Authorization header is set too: keep one of them"
        )
    try:  # aiohttp encodes basic auth in Latin-1: anything else fails every POST
        _url_basic_auth(parts)
    except UnicodeEncodeError:
        raise ConfigError(
            f"{where}: the URL's credentials (user:password@) hold a character basic auth "
            "cannot carry (it is sent in Latin-1): use other credentials, or send an "
            "Authorization header of your own with headers_env"
        ) from None


def _url_basic_auth(parts: SplitResult) -> str | None:
    """The Authorization header aiohttp sends for the URL's ``user:password@`` (Latin-1, in
    base64), None without them; UnicodeEncodeError when Latin-1 cannot carry them."""
    if parts.username is None and parts.password is None:
        return None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("latin-1")).decode()


class BodyTemplate:
    """A JSON structure whose strings are templates; checked once, at start."""

    def __init__(self, shape: Any, *, where: str, allowed: Mapping[str, str]) -> None:
        self.shape = self._compile(shape, where, allowed)

    def _compile(self, value: Any, where: str, allowed: Mapping[str, str]) -> Any:
        if isinstance(value, dict):
            return {k: self._compile(v, f"{where}.{k}", allowed) for k, v in value.items()}
        if isinstance(value, list):
            return [self._compile(v, f"{where}[{i}]", allowed) for i, v in enumerate(value)]
        if isinstance(value, str):
            return Template.compile(value, where=where, allowed=allowed)
        if isinstance(value, float) and not math.isfinite(value):  # TOML's nan, inf
            raise ConfigError(f"{where}: {value} is not JSON: JSON has no NaN or infinity")
        if value is None or isinstance(value, bool | int | float | NonBlank | FirstField):
            return value  # NonBlank, FirstField: a preset's, checked already
        raise ConfigError(f"{where}: {type(value).__name__} is not JSON")

    def render(self, fields: Mapping[str, Any], log: FilteringBoundLogger) -> Any:
        return _render(self.shape, fields, log)


def _render(value: Any, fields: Mapping[str, Any], log: FilteringBoundLogger) -> Any:
    if isinstance(value, dict):
        return {k: _render(v, fields, log) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, fields, log) for v in value]
    if isinstance(value, NonBlank):  # a preset's text: text, never blank
        return value.render(fields, log)
    if isinstance(value, FirstField):
        return value.render(fields)
    if isinstance(value, Template):
        whole = _ONE_FIELD.fullmatch(value.text)
        if whole is not None:  # one field alone keeps its JSON value
            return SafeFormatter().get_field(whole.group(1), (), fields)[0]
        return value.render(fields)
    return value


def _header_name(name: str, where: str) -> str:
    """The setting naming header ``name`` under ``where``, once ``name`` is a header name."""
    if not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{where}.{name!r}: {_NOT_A_NAME}")
    return f"{where}.{name}"


def _headers(parsed: WebhookOptions, where: str) -> dict[str, str]:
    """The static headers and those read from the environment, checked at start: a line break
    in a value would fail every POST. A value is never shown: it may be a secret."""
    headers: dict[str, str] = {}
    for name, value in parsed.headers.items():
        setting = _header_name(name, f"{where}.headers")
        if _HEADER_VALUE_REFUSED.search(value):
            raise ConfigError(
                f"{setting}: the value has a line break or control character; {_ONE_LINE}"
            )
        headers[name] = value
    for name, variable in parsed.headers_env.items():
        setting = _header_name(name, f"{where}.headers_env")
        value = _utf8_variable(variable, setting)
        if _HEADER_VALUE_REFUSED.search(value):
            raise ConfigError(
                f"{setting}: the environment variable {variable} holds a line break or control "
                f"character; {_ONE_LINE}"
            )
        headers[name] = value
    for setting in ("signature_header", "idempotency_header"):
        if not _HEADER_NAME.fullmatch(getattr(parsed, setting)):
            raise ConfigError(f"{where}.{setting}: {_NOT_A_NAME}")
    return headers


def _utf8_variable(variable: str, setting: str) -> str:
    """``variable``'s value for ``setting`` (:func:`environment.required`), once UTF-8 can carry
    it: a byte of another encoding in the environment, or JSON's lone surrogate (``\\ud800``)
    in LAMBDA_DESTINATIONS_SECRETS, failed signing with a traceback and went missing from a
    header. The value is never shown."""
    value = environment.required(variable, setting)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigError(
            f"{setting}: {variable} holds a character that is not UTF-8 text (a byte of another "
            "encoding, or a lone surrogate): give it UTF-8 text"
        ) from None
    return value


def idempotency_key(handler: str, key: str) -> str:
    """A stable key per (handler, record key): the same on every retry and redelivery."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"lambda-destinations:{handler}:{key}"))


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``t=<unix time>,v1=<hex HMAC-SHA256 of "<unix time>." + body>``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookHandler(storm.Notifier):
    """POSTs one JSON body per record (or per digest) to one URL."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        body: BodyTemplate,
        digest_body: BodyTemplate,
        headers: Mapping[str, str],
        secret: bytes | None,
        signature_header: str,
        idempotency_header: str,
        extra: Mapping[str, Any],
        timeout: float,
        in_doubt: InDoubt,
        storm: storm.StormPolicy,
        fit: Callable[[Any], Any] | None = None,
        preset: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.preset = preset  # slack, pagerduty, teams, discord: the preset's body, from message
        self.url = url
        self.body, self.digest_body = body, digest_body
        self.headers = dict(headers)  # may hold secrets: never logged
        self.secret = secret
        self.signature_header = signature_header
        self.idempotency_header = idempotency_header
        self.extra = dict(extra)  # top-level keys added to every body (PagerDuty's routing key)
        self.fit = fit  # a preset's limits on the rendered body
        self.timeout = timeout
        self.in_doubt = in_doubt
        self.storm = storm
        self.call_timeout = timeout  # the worker warns at start when handler_timeout is shorter
        self.tls: ssl.SSLContext | bool = tls or True  # True: the system's CA certificates
        # The egress proxy the environment names (HTTPS_PROXY, NO_PROXY), read at start as
        # botocore reads it for the AWS calls: aiohttp would otherwise go around it.
        self.proxy = proxy_for(url)
        parts = urlsplit(url)
        self.where = url_origin(parts)
        # What the server was sent that its answer must not carry into a log or a reason (an
        # Express 404 is "Cannot POST /the/path"; others echo the query or a header). A server
        # quotes the URL as aiohttp sent it: yarl's encoding of it, not always the one written.
        self.secrets = url_secrets(url, str(yarl.URL(url))) | set(self.headers.values())
        # aiohttp sends the URL's user:password@ as an Authorization header of its own, whose
        # base64 reads as the password: an answer may quote it too.
        with contextlib.suppress(UnicodeEncodeError):  # refused at start (_one_authorization)
            if (basic := _url_basic_auth(parts)) is not None:
                self.secrets.add(basic)
        self.secrets.update(str(value) for value in self.extra.values())
        if secret is not None:
            self.secrets.add(secret.decode(errors="replace"))
        if self.proxy is not None:
            self.secrets.update(self.proxy.secrets)

    async def notify(self, message: DecodedMessage, context: HandlerContext) -> None:
        body = self.body.render(record_fields(message, context), context.log)
        await self.post(body, key=context.key, log=context.log, context=context)

    async def send_digest(self, digest: storm.Digest, context: JobContext) -> None:
        body = self.digest_body.render(digest.fields(), context.log)

        async def send() -> None:
            await self.post(body, key=context.job.key, log=context.log)

        await storm.retry_digest(send, context)

    def request_headers(self, data: bytes, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.headers}
        headers[self.idempotency_header] = idempotency_key(self.name, key)
        if self.secret is not None:
            headers[self.signature_header] = signature(self.secret, str(int(time.time())), data)
        return headers

    async def post(
        self,
        body: Any,
        *,
        key: str,
        log: FilteringBoundLogger,
        context: HandlerContext | None = None,
    ) -> None:
        """One POST; raises TransientError (retried) or PermanentError (quarantined)."""
        if self.fit is not None:
            body = self.fit(body)
        if isinstance(body, dict) and self.extra:
            body = {**self.extra, **body}
        data = utf8(body)
        headers = self.request_headers(data, key)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        proxy = self.proxy
        connection = _Connection()
        try:
            # In doubt from the connection on: before it, nothing of the request has left.
            with sending(context, self.in_doubt, f"webhook {self.where}", started=False) as call:
                connection.call = call
                async with (
                    aiohttp.ClientSession(
                        timeout=timeout, trace_configs=[connection.trace]
                    ) as session,
                    session.post(
                        self.url,
                        data=data,
                        headers=headers,
                        allow_redirects=False,
                        ssl=self.tls,
                        proxy=None if proxy is None else proxy.url,
                    ) as answer,
                ):
                    call.answered()
                    status = answer.status
                    asked = retry_after(
                        answer.headers.get("Retry-After"), answer.headers.get("Date")
                    )
                    location = answer.headers.get("Location")
                    # A 2xx says the receiver has the request: its body is not read, so a body
                    # cut short or never sent cannot put a delivered request in doubt.
                    text = "" if 200 <= status < 300 else await _answer_start(answer)
                    answer.close()  # what is left unread goes with the connection
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._unanswered(exc, connected=connection.made, context=context, log=log)
            return
        if status == 429 and self.preset == "discord":  # its JSON says the wait as well
            waits = [wait for wait in (asked, discord_retry_after(text)) if wait is not None]
            asked = max(waits, default=None)
        if status in _UPSTREAM_TIMEOUTS:
            self._upstream_lost(status, text, asked, context=context, log=log)
            return
        self._judge(status, text, asked, location)
        log.info("webhook sent", handler=self.name, url=self.where, status=status)

    def _unanswered(
        self,
        exc: TimeoutError | aiohttp.ClientError,
        *,
        connected: bool,
        context: HandlerContext | None,
        log: FilteringBoundLogger,
    ) -> None:
        """A POST that got no HTTP answer: TransientError when nothing was served (no
        connection, or a server that does not speak HTTP), else the in_doubt policy decides
        (the same idempotency key goes with a resend, so the receiver can drop the duplicate).
        ``connected``: whether the connection was made (TCP, the proxy's tunnel, TLS).
        """
        if isinstance(exc, aiohttp.ClientHttpProxyError | aiohttp.ClientProxyConnectionError):
            # The proxy refused the tunnel, or could not be reached: nothing was sent.
            proxy = self.proxy or Proxy("the proxy", "HTTPS_PROXY")
            raise TransientError(f"webhook {self.where}: {proxy_problem(proxy, exc)}") from exc
        if isinstance(exc, aiohttp.ClientConnectorError):  # nothing was sent
            raise TransientError(f"webhook {self.where}: {connect_problem(exc)}") from exc
        if not connected:  # stopped before the connection was made: nothing was sent
            raise TransientError(f"webhook {self.where}: {self._unconnected(exc)}") from exc
        if isinstance(exc, aiohttp.ClientResponseError):  # an answer aiohttp could not read
            line = status_line(exc)
            if line is not None and not line.startswith(b"HTTP/"):
                # No HTTP server took the request (SSH's banner, Redis's -ERR): nothing was
                # served, so it is retried as a connection that failed, whatever in_doubt says.
                said = mask_secrets(line[:_SAID].decode("utf-8", "replace"), self.secrets)
                raise TransientError(
                    f"webhook {self.where}: the answer is not HTTP (it began {said!r}): check "
                    "the handler's url, its port and http:// or https://"
                ) from exc
            lost = "its answer was not valid HTTP"
        else:
            lost = _lost(exc, self.timeout)
        self.settle(f"webhook {self.where} ({lost})", exc, context=context, log=log)

    def _unconnected(self, exc: TimeoutError | aiohttp.ClientError) -> str:
        """Why no connection was made, when aiohttp's error does not say it (its total timeout
        ran out during a TLS handshake, a proxy's tunnel or a connect no host answered)."""
        if not isinstance(exc, TimeoutError):
            return f"cannot connect ({type(exc).__name__})"
        via = "" if self.proxy is None else f" through the proxy {self.proxy.shown}"
        return (
            f"no connection within timeout ({self.timeout:g}s){via}: check that the host is up "
            "and that the worker's network (a firewall, the proxy) lets it reach the URL's port"
        )

    def _judge(
        self, status: int, text: str, asked: float | None = None, location: str | None = None
    ) -> None:
        if 200 <= status < 300:
            return
        if status == 407 and self.proxy is not None:  # the proxy's answer, not the receiver's
            raise TransientError(f"webhook {self.where}: {proxy_refusal(self.proxy, status, '')}")
        answer = self._shown(text, location)
        reason = f"webhook {self.where} answered {status}"
        if status >= 500 or status in _RETRIED_STATUSES:
            if asked is not None:
                reason += f" (Retry-After: {asked:.0f}s)"  # whole seconds, never 1e+10
            raise TransientError(reason + (f": {answer}" if answer else ""), retry_after=asked)
        reason += f": {answer}" if answer else ""
        if 300 <= status < 400:
            reason += (
                f" (redirects are not followed: set the final URL{_pointed(self.url, location)})"
            )
        elif fix := _REFUSALS.get(status):
            reason += f" ({fix.format(body='message' if self.preset else 'body')})"
        raise PermanentError(reason)

    def _upstream_lost(
        self,
        status: int,
        text: str,
        asked: float | None,
        *,
        context: HandlerContext | None,
        log: FilteringBoundLogger,
    ) -> None:
        """A gateway's 504 (524): in doubt, the ``in_doubt`` policy decides; a resend waits
        for the answer's ``Retry-After`` as any retry does."""
        said = self._shown(text)
        what = f"webhook {self.where} (answered {status}" + (f": {said})" if said else ")")
        try:
            self.settle(what, GatewayTimeout(status), context=context, log=log)
        except TransientError as exc:
            exc.retry_after = asked
            raise

    def _shown(self, text: str, location: str | None = None) -> str:
        """The start of an answer's text as a reason shows it: on one line, what the request
        carried (and a redirect's target) masked."""
        secrets = self.secrets | _target_secrets(self.url, location) if location else self.secrets
        return " ".join(mask_secrets(text, secrets).split())[:_ANSWER_SHOWN]


class GatewayTimeout(Exception):
    """A gateway's 504 (524): it gave the request to its upstream, whose answer never came."""


class _Connection:
    """Whether a POST's connection was made (TCP, the proxy's tunnel, TLS), told by aiohttp's
    trace; once it is, the call is marked under way (:func:`sending`): a timeout, or the
    worker cutting the call off, before then left nothing at the receiver, and is retried
    whatever ``in_doubt`` says rather than counted done under ``skip``."""

    def __init__(self) -> None:
        self.made = False
        self.call: CallUnderWay | None = None
        self.trace = aiohttp.TraceConfig()
        self.trace.on_connection_create_end.append(self._made)
        self.trace.on_connection_reuseconn.append(self._made)

    async def _made(self, *_: object) -> None:
        self.made = True
        if self.call is not None:
            self.call.started()


def _target_secrets(url: str, location: str) -> set[str]:
    """What of a redirect's target may be secret (:func:`url_secrets`): an answer that points
    elsewhere often says the whole ``Location`` in its text too (Express's "Redirecting to
    https://…"), whose path or query may be another token."""
    try:
        target = urljoin(url, location)
        return url_secrets(target, str(yarl.URL(target)))
    except ValueError:  # no URL urllib or yarl reads ("http://[bad/…"): it whole, its path
        return {location, *location.split("/")[3:]}


def _pointed(url: str, location: str | None) -> str:
    """Where a redirect points, as the reason may show it (its scheme, host and port: its path
    and query may hold a token), or nothing when it names no http(s) URL."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(urljoin(url, location or ""))
        if location and parts.scheme in ("http", "https") and parts.hostname:
            return f"; it points to {url_origin(parts)}"
    return ""


def connect_problem(exc: aiohttp.ClientConnectorError) -> str:
    """Why no connection was made, and what to change when a setting is the cause: TLS spoken
    to a plain HTTP port, a certificate this machine does not trust."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _refused_certificate(exc)
    error = exc.os_error
    if isinstance(error, ssl.SSLError):
        reason = error.reason or type(error).__name__
        if reason in NOT_TLS:
            return (
                f"the TLS handshake failed ({reason}): the server at that port does not speak "
                "TLS; use http://, or the port where it serves https://"
            )
        return f"the TLS handshake failed ({reason}): check the server's TLS and the URL's port"
    return f"cannot connect ({error.strerror or error})"


def _refused_certificate(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """Why the server's certificate was refused, and the fix that this reason calls for."""
    cause = exc.certificate_error
    why = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause
    code = getattr(cause, "verify_code", None)
    if code in CERT_FOR_ANOTHER_NAME:
        return (
            f"the server's certificate does not name the URL's host {exc.host} ({why}): put a "
            f"host it names in the url, or give the server a certificate for {exc.host}"
        )
    if code == CERT_HAS_EXPIRED:
        return (
            f"the server's certificate has expired ({why}): renew it on the server, or check "
            "this machine's clock"
        )
    if code == CERT_NOT_YET_VALID:
        return (
            f"the server's certificate is not valid yet ({why}): check this machine's clock, "
            "and the certificate's start date"
        )
    return (
        f"the server's certificate is not trusted ({why}): name its CA's PEM file in "
        "cert_bundle, or give the server a certificate for the URL's host from a CA this "
        "machine trusts"
    )


def status_line(exc: aiohttp.ClientResponseError) -> bytes | None:
    """The first line of an answer aiohttp's parser refused, as its error quotes it
    (``Bad status line: ... b'SSH-2.0-OpenSSH_9.6'``); None when it quotes none."""
    for line in exc.message.splitlines():
        quoted = line.strip()
        if quoted[:2] in ("b'", 'b"'):
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(quoted)
                if isinstance(value, bytes):
                    return value
    return None


def _lost(exc: BaseException, timeout: float) -> str:
    """What became of a request whose answer never came."""
    if isinstance(exc, TimeoutError):
        return f"no answer within timeout ({timeout:g}s)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"the connection was lost ({exc.strerror or exc})"
    return f"the answer was lost ({type(exc).__name__})"


def retry_after(value: str | None, sent: str | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait: delay-seconds or an HTTP date (RFC
    9110, 10.2.3); a date past is 0. An HTTP date is read against the answer's ``Date``
    (``sent``), the server's clock, when it has one: a worker's clock minutes off the server's
    does not shorten or stretch the wait. None for no header, or one that is neither: ignored,
    the backoff applies."""
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    when = http_date(value)
    if when is None:
        return None
    now = None if sent is None else http_date(sent.strip())
    start = time.time() if now is None else now.timestamp()
    return float(max(0, math.ceil(when.timestamp() - start)))


async def _answer_start(answer: aiohttp.ClientResponse) -> str:
    """The first ``_ANSWER_READ`` bytes of a non-2xx answer as text, or what came of them within
    ``_ANSWER_WAIT`` seconds: the status decides, the body only explains."""
    data = bytearray()
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(_ANSWER_WAIT):
            while len(data) < _ANSWER_READ:
                chunk = await answer.content.read(_ANSWER_READ - len(data))
                if not chunk:
                    break
                data += chunk
    try:
        return data.decode(answer.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")


def _bodies(parsed: WebhookOptions, where: str) -> tuple[Any, Any]:
    if parsed.preset is not None:
        # Checked here, so that an error names the setting the user wrote, not the preset's
        # place for it in the body.
        escape = slack_escaped if parsed.preset == "slack" else None
        message = NonBlank(
            Template.compile(parsed.message, where=f"{where}.message", escape=escape),
            DEFAULT_MESSAGE,
        )
        digest = NonBlank(
            Template.compile(
                parsed.digest_message,
                where=f"{where}.digest_message",
                allowed=storm.DIGEST_FIELDS,
                escape=escape,
            ),
            storm.DEFAULT_DIGEST,
            allowed=storm.DIGEST_FIELDS,
        )
        if parsed.preset == "pagerduty":
            return pagerduty_bodies(message, digest, parsed.severity)
        return _PRESET_BODIES[parsed.preset](message, digest)
    return (
        GENERIC_BODY if parsed.body is None else parsed.body,
        GENERIC_DIGEST if parsed.digest_body is None else parsed.digest_body,
    )


_PRESET_BODIES: dict[str, Callable[[NonBlank, NonBlank], tuple[Any, Any]]] = {
    "slack": slack_bodies,
    "teams": teams_bodies,
    "discord": discord_bodies,
}
_FITS: dict[str, Callable[[Any], Any]] = {
    "slack": text_fit("text", SLACK_TEXT_MAX, slack_cut),
    "pagerduty": pagerduty_fit,
    "teams": teams_fit,
    "discord": text_fit("content", DISCORD_CONTENT_MAX),
}
# What to do instead of a retired Office 365 connector, said when its URL is given.
_WORKFLOWS = (
    "is an Office 365 connector (Incoming Webhook), which Microsoft has retired: in the Teams "
    'channel, open Workflows, create a flow from "Send webhook alerts to a channel" and give '
    "the handler its webhook URL"
)


def _url(parsed: WebhookOptions, where: str) -> str:
    """The URL to POST to: the setting's or its variable's, checked, as the preset needs it."""
    url = parsed.url or PAGERDUTY_URL
    named = f"{where}.url"
    if parsed.url_env:
        url = environment.required(parsed.url_env, f"{where}.url_env")
        named = f"{where}.url_env: {parsed.url_env}"
        try:
            check_url(url)
        except ValueError as exc:
            raise ConfigError(f"{named}: {exc}") from None
    if parsed.preset == "teams" and retired_teams_connector(url):
        raise ConfigError(f"{named}: {url_origin(url)} {_WORKFLOWS}")
    return discord_waits(url) if parsed.preset == "discord" else url


def build(name: str, options: dict[str, Any], settings: Settings) -> WebhookHandler:
    parsed = parse_options(WebhookOptions, name, options)
    where = f"handlers.{name}"
    url = _url(parsed, where)
    headers = _headers(parsed, where)
    _one_authorization(url, headers, f"{where}.url_env" if parsed.url_env else f"{where}.url")
    secret = None
    if parsed.secret_env:
        secret = _utf8_variable(parsed.secret_env, f"{where}.secret_env").encode()
    extra: dict[str, Any] = {}
    if parsed.routing_key_env:
        extra["routing_key"] = environment.required(
            parsed.routing_key_env, f"{where}.routing_key_env"
        )
    body, digest = _bodies(parsed, where)
    return WebhookHandler(
        name,
        url=url,
        body=BodyTemplate(body, where=f"{where}.body", allowed=RECORD_FIELDS),
        digest_body=BodyTemplate(digest, where=f"{where}.digest_body", allowed=storm.DIGEST_FIELDS),
        headers=headers,
        secret=secret,
        signature_header=parsed.signature_header,
        idempotency_header=parsed.idempotency_header,
        extra=extra,
        timeout=parsed.timeout,
        in_doubt=parsed.in_doubt,
        storm=parsed.storm,
        fit=_FITS.get(parsed.preset) if parsed.preset else None,
        preset=parsed.preset,
        tls=None if parsed.cert_bundle is None else trusting(parsed.cert_bundle),
    )
