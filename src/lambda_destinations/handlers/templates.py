"""Notification templates: record fields in, text out, and nothing else within reach.

A template is ``str.format`` syntax over a fixed set of names (:data:`RECORD_FIELDS`, or
:data:`~lambda_destinations.handlers.storm.DIGEST_FIELDS` for digests)::

    "{function_name} failed ({condition}): {error_type}: {error_message:.200}"
    "order {payload.orderId} for customer {payload[customer][id]}"

``payload`` and ``response`` are the record's request and response payloads: ``.key`` and
``[key]`` look up keys of JSON objects (and ``[0]`` items of JSON arrays), nothing else. The
formatter never reads attributes and never calls code: every value becomes text before it is
formatted, so a format spec can only pad or cut text. Every template is checked when the worker
starts; an unknown name, ``__`` anywhere, a positional ``{}``, a nested field or an unusual
format spec is a :class:`~lambda_destinations.errors.ConfigError` naming the handler setting.
``{record.__class__.__init__.__globals__}`` is refused at start, and would render nothing if it
ever reached a formatter.

Also here: reading a handler's settings table into a pydantic model, and durations (``300``,
``"5m"``, ``"1h30m"``), which the acting handlers share.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import html
import json
import re
import ssl
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, FiniteFloat, ValidationError
from pydantic.fields import FieldInfo

from lambda_destinations._text import cut, multi_line
from lambda_destinations.config import boolean_problem, number_problem
from lambda_destinations.errors import ConfigError

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.handlers.base import HandlerContext
    from lambda_destinations.schemas import DecodedMessage

# The names a record template may use, with what they hold (the README lists them too).
RECORD_FIELDS: dict[str, str] = {
    "summary": "one line: '<function> failed (<condition>): <error type>: <message>'",
    "function_name": "the function's name",
    "function_arn": "the function's ARN as the record gives it",
    "qualifier": "$LATEST, a version or an alias (empty when unqualified)",
    "region": "the function's region",
    "account": "the function's account id",
    "condition": "Success, RetriesExhausted, EventAgeExceeded, ...",
    "outcome": "success or failure",
    "error_type": "errorType (or the function error)",
    "error_message": "errorMessage",
    "stack_trace": "the first lines of the stack trace",
    "details": "the facts, one per line: function, condition, attempts, time, error, stack trace",
    "request_id": "the invocation's request id",
    "invoke_count": "approximateInvokeCount",
    "timestamp": "the record's timestamp (ISO 8601, UTC)",
    "received_at": "when the worker handled it (ISO 8601, UTC)",
    "key": "the record's idempotency key",
    "kind": "invocation, stream-failure or legacy-dlq",
    "envelope": "none, sns, eventbridge or s3",
    "queue": "the queue's name",
    "message_id": "the SQS message id",
    "receive_count": "ApproximateReceiveCount",
    "payload": "the request payload (JSON); payload.KEY reads one key",
    "response": "the response payload (JSON); response.KEY reads one key",
}

# Names under which JSON values may be looked into by key.
JSON_ROOTS = frozenset({"payload", "response"})

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PART = re.compile(r"\.([^.\[\]]+)|\[([^\[\]]+)\]")
# Fill and alignment, width, precision, and the string type: padding and cutting, no more.
_SPEC = re.compile(r"(?:[^{}]?[<>^])?(?:[1-9][0-9]{0,3})?(?:\.[0-9]{1,5})?s?")
_CONVERSIONS = frozenset({None, "s", "r", "a"})
# Caps on what a template renders (the README's "Templates" states them): a field, padding
# included, and the whole text. A payload or a padded spec repeated cannot make megabytes.
FIELD_MAX = 10_000
RENDERED_MAX = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    root: str
    keys: tuple[str, ...]


def _split(field_name: str) -> _Field | None:
    """``payload.customer[id]`` -> ('payload', ('customer', 'id')); None when malformed."""
    match = _NAME.match(field_name)
    if match is None:
        return None
    keys: list[str] = []
    position = match.end()
    while position < len(field_name):
        part = _PART.match(field_name, position)
        if part is None:
            return None
        keys.append(part.group(1) if part.group(1) is not None else part.group(2))
        position = part.end()
    return _Field(match.group(), tuple(keys))


def as_text(value: Any) -> str:
    """How a value reads in a notification: JSON for objects and arrays, ISO 8601 for times."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dt.datetime):
        return iso(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return ""


def iso(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _lookup(value: Any, keys: Sequence[str]) -> Any:
    """Keys of JSON objects and indexes of JSON arrays; anything else is absent."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and (index := _index(key)) is not None and index < len(value):
            value = value[index]
        else:
            return None
    return value


def _index(key: str) -> int | None:
    """``key`` as an array index, None when it is none. ASCII digits only: ``str.isdigit``
    takes "²" and "①" too, which ``int`` refuses, as it refuses more than 4,300 digits; an
    error there failed the template's every render."""
    digits = key.lstrip("0") or "0"
    if not (key.isascii() and key.isdigit()) or len(digits) > 18:
        return None
    return int(digits)


class SafeFormatter(string.Formatter):
    """``str.format`` that reads only the given mapping, by name and JSON key, as text.

    ``clean`` is applied to every value's text before its format spec pads or cuts it
    (:func:`~lambda_destinations._text.multi_line` for a message body), ``escape`` to every
    formatted value (``html.escape`` for HTML templates).
    """

    def __init__(
        self,
        escape: Callable[[str], str] | None = None,
        clean: Callable[[str], str] | None = None,
    ) -> None:
        self.escape = escape
        self.clean = clean

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        field = _split(field_name)
        if field is None or "__" in field_name or field.root not in kwargs:
            return None, field_name
        value = kwargs[field.root]
        if field.keys:
            value = _lookup(value, field.keys) if field.root in JSON_ROOTS else None
        return value, field_name

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        text = as_text(value)
        if conversion == "r":
            return repr(text)
        if conversion == "a":
            return ascii(text)
        return text

    def format_field(self, value: Any, format_spec: str) -> str:
        text = as_text(value)
        if self.clean is not None:
            text = self.clean(text)
        if format_spec:
            text = format(text, format_spec) if _SPEC.fullmatch(format_spec) else text
        text = cut(text, FIELD_MAX)
        return self.escape(text) if self.escape is not None else text


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    """A checked template; ``render`` fills it from a mapping of the allowed names."""

    text: str
    where: str  # the setting it came from, e.g. handlers.oncall.message
    names: frozenset[str]  # the top-level names it uses
    # Applied to each value, never to the template's own text: html.escape for HTML, Slack's
    # escapes for its mrkdwn.
    escape: Callable[[str], str] | None = None
    # A message body's: each value as lines without control characters (multi_line), so
    # that what a function wrote cannot put a NUL in the message, drive the terminal a mail
    # reader runs in, or reverse the template's own text. The template's text is the
    # operator's, and stays as written.
    body: bool = False

    @classmethod
    def compile(
        cls,
        text: str,
        *,
        where: str,
        allowed: Mapping[str, str] | Iterable[str] = RECORD_FIELDS,
        escape: Callable[[str], str] | None = None,
        body: bool = False,
    ) -> Template:
        """Check ``text`` once, at start: ConfigError naming ``where`` and the field if any
        part of it could reach beyond the allowed names."""
        allowed_names = frozenset(allowed)
        names = frozenset(_check(text, where, allowed_names))
        return cls(text=text, where=where, names=names, escape=escape, body=body)

    def render(self, fields: Mapping[str, Any]) -> str:
        """The text, each field cut to FIELD_MAX characters and the whole to RENDERED_MAX."""
        formatter = SafeFormatter(self.escape, multi_line if self.body else None)
        return cut(formatter.vformat(self.text, (), fields), RENDERED_MAX)


class NonBlank:
    """A message, subject or text template that, rendered blank (a missing value alone), sends
    its setting's built-in default instead: an alert that says nothing tells no one anything.
    The first time, a warning names the setting (once per handler and setting)."""

    def __init__(
        self, template: Template, default: str, *, allowed: Iterable[str] = RECORD_FIELDS
    ) -> None:
        self.template = template
        self.default = Template.compile(
            default,
            where=template.where,
            allowed=allowed,
            escape=template.escape,
            body=template.body,
        )
        self.warned = False

    def render(self, fields: Mapping[str, Any], log: FilteringBoundLogger) -> str:
        text = self.template.render(fields)
        if shows_anything(text) or self.template.text == self.default.text:
            return text
        if not self.warned:
            self.warned = True
            log.warning(
                "template rendered blank: its default was sent instead",
                setting=self.template.where,
                default=self.default.text,
            )
        return self.default.render(fields)


def shows_anything(text: str, *, markup: bool = False) -> bool:
    """Whether ``text`` has a character a reader sees: blank is spaces, and control and format
    characters (a NUL, an ESC, U+202E), which the subject or the message shows as spaces or
    U+FFFD at most. With ``markup``, ``text`` is HTML: its tags show nothing, its entities
    what they spell."""
    if markup:
        text = html.unescape(_TAG.sub("", text))
    return any(char.isprintable() and not char.isspace() for char in text)


_TAG = re.compile(r"<[^>]*>")


def cut_to_fit(text: str, fits: Callable[[str], bool]) -> str:
    """``text`` if it ``fits``, else the longest :func:`cut` of it that does (the ellipsis
    alone at worst): for a limit not counted in characters (bytes, UTF-16)."""
    if fits(text):
        return text
    low, high = 1, len(text) - 1  # characters of the cut, its ellipsis included
    while low < high:  # binary search: a shorter cut never costs more
        middle = (low + high + 1) // 2
        if fits(cut(text, middle)):
            low = middle
        else:
            high = middle - 1
    return cut(text, low)


def _check(text: str, where: str, allowed: frozenset[str]) -> list[str]:
    if not isinstance(text, str):
        raise ConfigError(f"{where}: a template is text, not {type(text).__name__}")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(
            f"{where}: not a valid template ({exc}); write literal braces as {{{{ and }}}}"
        ) from None
    used: list[str] = []
    known = ", ".join(sorted(allowed))
    for _literal, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        shown = "{" + field_name + (f"!{conversion}" if conversion else "")
        shown += (f":{format_spec}" if format_spec else "") + "}"

        def refuse(reason: str, shown: str = shown) -> ConfigError:
            return ConfigError(
                f"{where}: template field {shown} is refused: {reason} "
                f"(templates read record fields only: {known})"
            )

        if "__" in field_name or "__" in (format_spec or ""):
            raise refuse('names with "__" are never allowed')
        if not field_name or field_name.isdigit():
            raise refuse("positional fields are not allowed; name a field")
        field = _split(field_name)
        if field is None:
            raise refuse("only NAME, NAME.KEY and NAME[KEY] are allowed")
        if field.root not in allowed:
            raise refuse(f"{field.root!r} is not a field")
        if field.keys and field.root not in JSON_ROOTS:
            raise refuse(
                f"{field.root!r} is text: only payload and response can be looked into by key"
            )
        if conversion not in _CONVERSIONS:
            raise refuse(f"conversion !{conversion} is not allowed")
        if format_spec and ("{" in format_spec or not _SPEC.fullmatch(format_spec)):
            raise refuse("only padding and cutting format specs are allowed, such as :.200 or :>10")
        used.append(field.root)
    return used


# -- what a record offers to templates --------------------------------------------------------


def summary(message: DecodedMessage) -> str:
    """One line saying what happened, for SMS and subjects."""
    function = message.function.function_name if message.function else None
    if message.succeeded:
        return f"{function or 'a function'} succeeded"
    who = function or f"request {message.request_id}"
    text = f"{who} failed ({message.condition})" if message.condition else f"{who} failed"
    if message.kind == "stream-failure":
        text += " on a stream batch"
    error = ": ".join(part for part in (message.error_type, message.error_message) if part)
    return f"{text}: {error}" if error else text


def record_fields(
    message: DecodedMessage, context: HandlerContext, *, stack_lines: int = 10
) -> dict[str, Any]:
    """The values of :data:`RECORD_FIELDS` for one record."""
    function = message.function
    trace = message.stack_trace or []
    lines = [line for entry in trace for line in str(entry).rstrip("\n").splitlines()]
    facts = (
        ("Function", function.arn if function else None),
        ("Condition", message.condition),
        ("Attempts", message.approximate_invoke_count),
        ("Request id", message.request_id),
        ("Time", iso(message.timestamp)),
        ("Error type", message.error_type),
        ("Error message", message.error_message),
        ("Queue", context.queue_name),
    )
    details = "\n".join(f"{label + ':':<15}{as_text(value)}" for label, value in facts if value)
    if lines and stack_lines:
        details += "\n\nStack trace (first lines):\n" + "\n".join(lines[:stack_lines])
    return {
        "summary": summary(message),
        "function_name": function.function_name if function else None,
        "function_arn": function.arn if function else None,
        "qualifier": function.qualifier if function else None,
        "region": function.region if function else None,
        "account": function.account if function else None,
        "condition": message.condition,
        "outcome": "success" if message.succeeded else "failure",
        "error_type": message.error_type,
        "error_message": message.error_message,
        "stack_trace": "\n".join(lines[:stack_lines]),
        "details": details,
        "request_id": message.request_id,
        "invoke_count": message.approximate_invoke_count,
        "timestamp": iso(message.timestamp),
        "received_at": iso(dt.datetime.now(dt.UTC)),
        "key": message.key,
        "kind": str(message.kind),
        "envelope": str(message.envelope),
        "queue": context.queue_name,
        "message_id": context.message_id,
        "receive_count": context.receive_count,
        "payload": message.request_payload,
        "response": message.response_payload,
    }


# -- handler settings --------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(value: Any) -> Any:
    """Seconds from a number or from text such as ``"90"``, ``"30s"``, ``"5m"``, ``"1h30m"``."""
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            return float(text)
        except ValueError:
            pass
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"{value!r} is not a duration: use seconds, or 30s, 5m, 1h30m")
        hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


Duration = Annotated[FiniteFloat, BeforeValidator(parse_duration)]
"""Seconds, given as a number or as text (``"5m"``); never NaN or infinite."""


def trusting(cert_bundle: str) -> ssl.SSLContext:
    """A TLS context that trusts the CA certificates of the PEM file ``cert_bundle`` (in place
    of the system's); ValueError naming the file and the fix when it cannot be loaded."""
    fix = "name a PEM file of CA certificates"
    try:
        return ssl.create_default_context(cafile=cert_bundle)
    except ssl.SSLError as exc:
        raise ValueError(f"{cert_bundle} holds no PEM certificates ({exc.reason}): {fix}") from None
    except OSError as exc:
        raise ValueError(f"{cert_bundle} cannot be read ({exc.strerror}): {fix}") from None


def _loadable_bundle(value: str) -> str:
    trusting(value)
    return value


CertBundle = Annotated[str, AfterValidator(_loadable_bundle)]
"""A PEM file of CA certificates, loaded when the settings are read: a file that cannot be
loaded would fail every connection, each retried until its DLQ, with an error naming no file."""


def describe_duration(seconds: float) -> str:
    """``300`` -> ``"5 minutes"``, ``3600`` -> ``"1 hour"``, ``90`` -> ``"90 seconds"``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" + ("" if count == 1 else "s")
    count_text = f"{seconds:g}"
    return f"{count_text} second" + ("" if seconds == 1 else "s")


def parse_options(model: type[M], name: str, options: Mapping[str, Any]) -> M:
    """``options`` (a ``[handlers.NAME]`` table without ``type``) as ``model``; ConfigError
    naming the first bad setting, as ``handlers.NAME.setting: what is wrong``."""
    for key, value in options.items():  # true or false for a number: pydantic takes 1 or 0
        field = _field(model, (key,))
        duration = describe_duration if field is not None and _is_duration(field) else None
        if field is not None and (problem := boolean_problem(field, value, duration=duration)):
            raise ConfigError(f"handlers.{name}.{key}: {problem}")
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt name is the reason its setting is missing too: say that one first.
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        location = ".".join(str(part) for part in error["loc"])
        where = f"handlers.{name}.{location}" if location else f"handlers.{name}"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":  # pydantic's "Field required" names no fix
            message = f"missing: this handler needs it; add it to the [handlers.{name}] table"
        if error["type"] == "extra_forbidden":
            message = _unknown_setting(model, str(error["loc"][-1]))
        field = _field(model, error["loc"])
        if field is not None:
            message = (
                number_problem(
                    field, error, duration=describe_duration if _is_duration(field) else None
                )
                or message
            )
        raise ConfigError(f"{where}: {message}") from None


def _field(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The field of ``model`` an error's location names (by its name or its alias, as the
    table writes it), for a setting of the table itself; None for one deeper in it."""
    if len(loc) != 1:
        return None
    return next(
        (field for name, field in model.model_fields.items() if loc[0] in (name, field.alias)),
        None,
    )


def _is_duration(field: FieldInfo) -> bool:
    """Whether ``field`` is a :data:`Duration`: seconds, given as a number or as "5m"."""
    return any(
        isinstance(rule, BeforeValidator) and rule.func is parse_duration for rule in field.metadata
    )


def _unknown_setting(model: type[BaseModel], given: str) -> str:
    """What to write instead of the unknown setting ``given``: the closest name the table
    takes, as written there (``from``, not the field's own name), or all of them."""
    known = sorted(field.alias or name for name, field in model.model_fields.items())
    close = difflib.get_close_matches(given.lower(), known, n=1)
    if close:
        return f"unknown setting: did you mean {close[0]!r}?"
    return f"unknown setting (this handler takes {', '.join(known)})"
