"""Masking what must not be printed or logged: URL passwords and query values, email addresses,
phone numbers, and the secrets a handler was configured with.

The one place that knows what a secret or a personal address looks like. Logs pass every value
through :func:`redact_event` (installed by :func:`lambda_destinations.logs.configure_logging`),
one-line errors and the reasons of quarantined messages through :func:`redact`; code that
prints a known URL, address or number masks it with :func:`mask_url`, :func:`mask_email` or
:func:`mask_phone`; what quotes a server's answer masks the secrets that server was sent with
:func:`mask_secrets` (:func:`url_secrets` lists a URL's). What a user typed is repeated in an
error line cut by :func:`echoed`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import SplitResult, quote, quote_plus, unquote, unquote_plus, urlsplit

MASK = "***"
# A known secret shorter than this is left in a text: masking it would mask ordinary words
# ("/", "v1", "on") all over the text, and so short a value guards nothing.
SHORTEST_MASKED = 4

# scheme://user:password@ — the password may hold anything but whitespace (SQLAlchemy and libpq
# read it up to the first "@", "/" and ":" included). One with an "@" of its own not written
# %40 is masked up to the last "@" before the query: what follows its "@" ("/x", "#x") would
# read as the host's path or fragment, and be shown.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<secret>[^\s@]*(?:@[^\s@?]*)*)@"
)
# A known URL's own user:password@ (mask_url's argument), read as SQLAlchemy reads it: the user
# name up to ":" or "/", the password up to the "@", spaces included. In free text a space ends
# a URL, so _URL_PASSWORD stops at one; a URL given whole has no such end.
_LEADING_PASSWORD = re.compile(
    r"\A(?P<head>\s*[A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*):(?P<secret>[^@]*(?:@[^@?]*)*)@"
)
# password=... in a query string or a key=value list (libpq and asyncpg accept it there), and
# the tokens and keys an error's text may quote so (token=, access_token=, api_key=).
_KEY_PASSWORD = re.compile(
    r"(?P<key>\b(?:\w*_)?(?:password|passwd|pwd|secret|access_key|token|api_?key)=)"
    r"(?P<secret>[^&\s;,'\"]+)",
    re.IGNORECASE,
)
# Such a key's value in quotes, as code quotes it: an object's repr (a dataclass's or a
# model's password='...'), a dict's ('password': '...'), JSON's ("api_key": "..."), a libpq
# connection string's (password='a b'); its escapes (\\", \\') within it.
_QUOTED_PASSWORD = re.compile(
    r"(?P<key>\b(?:\w*_)?(?:password|passwd|pwd|secret|access_key|token|api_?key)['\"]?\s*[=:]\s*"
    r"(?P<quote>['\"]))(?P<secret>(?:\\.|(?!(?P=quote))[^\\])+)(?P=quote)",
    re.IGNORECASE,
)
# An Authorization header's credentials quoted in a text: "Bearer <token>".
_BEARER = re.compile(r"(?P<key>\bBearer\s+)(?P<secret>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
# A header carrying a secret quoted as "name:value": AWS's SignatureDoesNotMatch message quotes
# the canonical request it expected, a temporary credential's session token in it
# (x-amz-security-token:IQoJ...); an Authorization header with its scheme (Basic, AWS4-...).
_HEADER_SECRET = re.compile(
    r"(?P<key>\b(?:x-amz-(?:security|access)-token\s*:\s*"
    r"|authorization\s*:\s*(?:basic|bearer|digest|token|aws4-hmac-sha256|aws)\s+))"
    r"(?P<secret>[^\s'\"]+)",
    re.IGNORECASE,
)
# A webhook URL whose path is its token (what url_secrets masks of a configured one): Slack's,
# Discord's, Microsoft Teams', Telegram's bot API; an error quotes it (aiohttp's
# ClientResponseError says url='https://hooks.slack.com/services/T0/B0/XXXX').
_TOKEN_PATH = re.compile(
    r"(?P<key>\bhttps?://(?:hooks\.slack\.com/(?:services|workflows|triggers)"
    r"|(?:[\w-]+\.)?discord(?:app)?\.com/api/(?:v\d+/)?webhooks"
    r"|[\w.-]*webhook\.office\.com/webhookb2|outlook\.office\.com/webhook"
    r"|api\.telegram\.org)/)(?P<secret>[^\s?#'\"<>]+)",
    re.IGNORECASE,
)
# A field named for a secret (a log line's password=..., a headers mapping's Authorization): its
# value goes whole, whatever it looks like. Names are read in snake case, so apiKey, X-Api-Key
# and client_secret are such names; key alone (a record's idempotency key) is not. A PagerDuty
# routing (integration) key or a signing key is a secret: written inline by mistake for its
# ``*_env`` option, ``config`` showed it whole.
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|pwd|secret|token|api_?key|authorization|auth|"
    r"credentials?|(?:private|access|routing|integration|signing)_?key|cookie|signature)(?:_|$)"
)
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[\s\-.]+")
# A URL's query string: its values are tokens as often as not (?token=, ?sig=, ?api_key=).
_URL_QUERY = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s?#'\"<>]*\?)(?P<query>[^\s#'\"<>]*)"
)
# An address not preceded by "//" or ":" (a URL's user name, which is no secret).
_EMAIL = re.compile(
    r"(?<![\w.%+\-/])(?P<local>[A-Za-z0-9._%+\-]+)@(?P<domain>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)"
)
# E.164 numbers: "+" and 8 to 15 digits.
_PHONE = re.compile(r"(?<![\w+])\+[1-9]\d{7,14}\b")


ECHOED = 80  # characters of an argument an error line repeats


def echoed(value: str) -> str:
    """``value`` as an error line repeats it, cut to ECHOED characters: an id pasted wrong (a
    whole file) must not come back as a line of 100 KB."""
    if len(value) <= ECHOED:
        return value
    return f"{value[:ECHOED]}… ({len(value):,} characters)"


def mask_phone(number: str) -> str:
    """Enough of a number to tell recipients apart, not enough to call it: ``+44*****0123``."""
    if len(number) < 10:
        return "*" * max(len(number) - 2, 1) + number[-2:]
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


def ascii_digits(text: str) -> str:
    """``text`` with each decimal digit of any script (Arabic-Indic, fullwidth, …) as its ASCII
    digit, as phonenumbers reads a number's (Arabic-Indic five, U+0665, is 5)."""
    return "".join(str(unicodedata.decimal(char, char)) for char in text)


def mask_typed_phone(number: str) -> str:
    """A phone number as typed in a setting (spaced, dashed, national: ``+1 (415) 555-2671``,
    in digits of any script) masked as logs show it (``+14*****2671``: its digits through
    :func:`mask_phone`), when it holds the 8 digits or more of one; else as it is (``+1555``
    is nobody's). :func:`redact` reads E.164 in one piece only."""
    digits = "".join(char for char in ascii_digits(number) if char in "0123456789")
    if len(digits) < 8:
        return number
    return mask_phone(("+" if number.strip().startswith(("+", "\uff0b")) else "") + digits)


def mask_email(address: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: the domain and one letter stay."""
    local, at, domain = address.rpartition("@")
    if not at:
        return MASK
    return f"{local[:1]}{MASK}@{domain}"


def mask_url(url: str) -> str:
    """``scheme://user:secret@host/db?token=x&y`` -> ``scheme://user:***@host/db?token=***&***``.

    The query's keys stay (they tell what was set), its values go: any of them may be a token.
    A password with spaces in it is masked whole: ``url`` is one URL, not text.
    """
    return _mask_urls(_LEADING_PASSWORD.sub(_hide_userinfo, url, count=1))


def url_origin(url: str | SplitResult) -> str:
    """The scheme, host and port of a URL, as logs and reasons show a URL whose path may be a
    secret (a Slack webhook's token is a path segment): never the path, query or credentials;
    an IPv6 address in its brackets. ``***`` for what is no URL."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else url
        port = parts.port
    except ValueError:  # an unclosed [, a port that is no number
        return MASK
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _mask_urls(text: str) -> str:
    """:func:`mask_url` for the URLs in free text, each ending at a space."""
    if "://" in text:  # redact() runs on every string of every log line
        text = _URL_QUERY.sub(_hide_query_values, _URL_PASSWORD.sub(_hide_userinfo, text))
        text = _TOKEN_PATH.sub(_hide_key, text)
    text = _KEY_PASSWORD.sub(_hide_key, text)
    if "'" in text or '"' in text:
        text = _QUOTED_PASSWORD.sub(_hide_quoted, text)
    return text


def url_secrets(url: str, *sent_as: str) -> set[str]:
    """What of ``url`` may be secret and echoed by the server it names: the user info, the path
    and the query, whole and in pieces (path segments, query values), as written, decoded and
    encoded again.

    ``sent_as``: the same URL as the HTTP client puts it on the wire, which re-encodes it (yarl
    sends a query's ``%2F`` as ``/``, ``%7e`` as ``~``): a server quotes that form. A Slack or
    Discord webhook's token is a path segment; other services take ``?token=``.
    """
    found = {piece for each in (url, *sent_as) for piece in _url_pieces(each)}
    found |= {unquote(part) for part in found} | {unquote_plus(part) for part in found}
    # what a client or a server may make of a decoded value: %-escapes, "+" for a space
    encoded = {quote(part, safe, errors="replace") for part in found for safe in ("/", "")}
    return found | encoded | {quote_plus(part, errors="replace") for part in found}


def _url_pieces(url: str) -> set[str]:
    parts = urlsplit(url)
    found = {parts.path, parts.query, f"{parts.path}?{parts.query}"}
    found.update(parts.path.split("/"))
    found.update(value for _, _, value in (item.partition("=") for item in parts.query.split("&")))
    found.update({parts.username or "", parts.password or ""})
    return found


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (and each word of one with spaces, as the token of
    ``Bearer <token>``) replaced by ``***``, the longest first; see :data:`SHORTEST_MASKED`."""
    words = {word for secret in secrets for word in (secret, *secret.split())}
    masked = sorted((word for word in words if len(word) >= SHORTEST_MASKED), key=len, reverse=True)
    if not masked or not text:
        return text
    return re.sub("|".join(map(re.escape, masked)), MASK, text)


def redact(text: str) -> str:
    """``text`` with URL passwords, ``password=`` values, email addresses and phone numbers
    masked."""
    if not text:
        return text
    text = _mask_urls(text)
    if "earer" in text:
        text = _BEARER.sub(_hide_key, text)
    if ":" in text and ("oken" in text or "OKEN" in text or "uthoriz" in text.lower()):
        text = _HEADER_SECRET.sub(_hide_key, text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    if "+" in text:
        text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return text


# Levels of dicts and lists :func:`redact_value` walks; what is nested deeper is written as
# DEEPER. A record's payload nested 500 deep (JSON takes it) made a handler's log call of it
# pass Python's recursion limit, raising in the handler.
DEPTH_MAX = 64
DEEPER = f"… nested more than {DEPTH_MAX} levels deep"


def redact_value(value: Any, depth: int = 0) -> Any:
    """``value`` with :func:`redact` applied to every string in it (mappings, lists, tuples),
    down to DEPTH_MAX levels."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset) and depth >= DEPTH_MAX:
        return DEEPER
    if isinstance(value, Mapping):
        return {_redacted_key(k): _redact_field(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth + 1) for v in value]
    if isinstance(value, BaseException):
        return redact(exception_text(value))
    return value


def _redacted_key(key: object) -> object:
    """A mapping's key redacted: a text one; any other as it is (a tuple key, which a list
    could not be)."""
    return redact(key) if isinstance(key, str) else key


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, which is the raising code's own: a ``__str__`` that fails (a handler's
    exception class) is said so."""
    try:
        return str(exc)
    except Exception as failed:  # noqa: BLE001 - any bug in a handler's exception class
        return f"(its text could not be made: {type(failed).__name__})"


def redact_event(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every value of the event (and the rendered traceback) redacted."""
    for key, value in list(event_dict.items()):
        if isinstance(value, str | Mapping | list | tuple | set | frozenset | BaseException):
            event_dict[key] = _redact_field(key, value)
        elif value is not None and secret_name(key):
            event_dict[key] = MASK
    return event_dict


def _redact_field(name: object, value: Any, depth: int = 0) -> Any:
    """``value`` of the field ``name``: masked whole when the name is a secret's."""
    if value is not None and secret_name(name):
        return MASK
    return redact_value(value, depth)


@functools.lru_cache(maxsize=1024)
def secret_name(name: object) -> bool:
    """Whether a field called ``name`` holds a secret (``password``, ``apiKey``,
    ``Authorization``, ``X-Api-Key``, ``client_secret``), whatever its value looks like."""
    if not isinstance(name, str):
        return False
    return _SECRET_NAME.search(_WORD_START.sub("_", name).lower()) is not None


def _hide_userinfo(match: re.Match[str]) -> str:
    return f"{match['head']}:{MASK}@"


def _hide_key(match: re.Match[str]) -> str:
    return f"{match['key']}{MASK}"


def _hide_quoted(match: re.Match[str]) -> str:
    return f"{match['key']}{MASK}{match['quote']}"


def _hide_query_values(match: re.Match[str]) -> str:
    items = (_hide_query_value(item) for item in match["query"].split("&"))
    return match["head"] + "&".join(items)


def _hide_query_value(item: str) -> str:
    key, equals, value = item.partition("=")
    if not equals:
        return MASK if key else key  # a bare ?token is a value too
    return f"{key}={MASK}" if value else item


__all__ = [
    "MASK",
    "SHORTEST_MASKED",
    "echoed",
    "exception_text",
    "mask_email",
    "mask_phone",
    "mask_secrets",
    "mask_typed_phone",
    "mask_url",
    "redact",
    "redact_event",
    "redact_value",
    "secret_name",
    "url_origin",
    "url_secrets",
]
