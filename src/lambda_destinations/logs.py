"""structlog set-up: JSON lines in containers, a readable console in a terminal.

Configured once by the entry point (the one process-wide setting the project keeps).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

import structlog

from lambda_destinations._text import unshown, visible
from lambda_destinations.redact import redact, redact_event

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto",
    level: Literal["debug", "info", "warning", "error"] = "info",
    *,
    hide: Callable[[Mapping[str, Any]], bool] | None = None,
) -> None:
    """Log to stderr; ``auto`` picks the console renderer when stderr is a terminal.

    ``hide``: events for which it returns true are not written (dev leaves out what it
    shows in its own words)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: list[structlog.typing.Processor]
    if fmt == "json":
        renderer = [structlog.processors.JSONRenderer()]
    else:
        renderer = [_escaped, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    hiding: list[structlog.typing.Processor] = [] if hide is None else [_hiding(hide)]
    # What every line gets, then what writes it: structlog's events and the standard
    # library's records alike.
    stamped: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _TIMESTAMP,
    ]
    written: list[structlog.typing.Processor] = [
        structlog.processors.format_exc_info,
        redact_event,  # passwords and addresses never reach a line
        _capped,  # after redact_event: a cut could split a password from what marks it
        *renderer,
    ]
    structlog.configure(
        processors=[*hiding, *stamped, *written],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _standard_logging(stamped, written, max(logging.WARNING, LEVELS[level]))


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


def _standard_logging(
    stamped: list[structlog.typing.Processor],
    written: list[structlog.typing.Processor],
    level: int,
) -> None:
    """Third-party libraries log through the standard library (botocore, aiohttp, asyncio's
    "Task exception was never retrieved", SQLAlchemy), and ``warnings.warn`` too once
    captured: their records are written as structlog's events are, one JSON object a line in
    JSON (a traceback in its ``exception`` field, not on lines of its own), one line in the
    console, with the ``logger`` that wrote them; at ``level`` and above (warnings at least:
    keep them quiet)."""
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name, _stripped],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *written],
        )
    )
    root = logging.getLogger()
    for old in [each for each in root.handlers if isinstance(each, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    for each in root.handlers:
        if not any(isinstance(f, _RedactingFilter) for f in each.filters):
            each.addFilter(_RedactingFilter())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard library's records, written on the stderr of the moment (as structlog's
    lines are), whatever replaced it since."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _stripped(_logger: Any, _method: str, event: structlog.typing.EventDict) -> Any:
    """A record's text without the line break a library (or ``warnings``) ends it with."""
    if isinstance(text := event.get("event"), str):
        event["event"] = text.rstrip()
    return event


# Characters of one field of a log line (a traceback, an error's text): past it, its start and
# its end, where a traceback names the exception. A handler's error that carries a payload of
# megabytes would otherwise be written whole at every retry (a log line of CloudWatch Logs holds
# 256 KiB at most).
LOGGED_MAX = 32 * 1024


def _capped(_logger: Any, _method: str, event: structlog.typing.EventDict) -> Any:
    for key, value in event.items():
        if isinstance(value, str) and len(value) > LOGGED_MAX:
            half = LOGGED_MAX // 2
            cut = len(value) - 2 * half
            event[key] = f"{value[:half]}\n… {cut:,} characters cut …\n{value[-half:]}"
    return event


class _Quoted:
    """A log value the console shows as Python's ``repr`` of it: quoted, its control, bidi
    and other unprintable characters escaped (``'Err\\x1b[2J\\u202e'``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)

    __str__ = __repr__


def _escaped(_logger: Any, _method: str, event: structlog.typing.EventDict) -> Any:
    """The console's line written for a terminal: no value drives it or reorders it.

    What a function or a message's sender wrote reaches log lines (an error's text, a request
    id, what a handler logs of a record), and structlog's console renderer writes a text value
    without a space or a quote as it is, and the event and a traceback always: an ESC sequence
    could clear the operator's screen or set the clipboard (OSC 52), U+202E reverse the rest of
    the line, a line feed in the event start a forged line. Such a value is shown quoted with
    its escapes (as the renderer already shows one holding a space or a line feed); a
    traceback keeps its lines, the rest spelled as :func:`visible` spells it. JSON lines escape
    all of these already.
    """
    for key, value in event.items():
        if not isinstance(value, str):
            continue
        if key in ("exception", "stack"):
            event[key] = visible(value)
        elif "\n" in value or unshown(value):
            event[key] = _Quoted(value)
    return event


def _hiding(hide: Callable[[Mapping[str, Any]], bool]) -> structlog.typing.Processor:
    def processor(_logger: Any, _method: str, event: structlog.typing.EventDict) -> Any:
        if hide(event):
            raise structlog.DropEvent
        return event

    return processor


class _RedactingFilter(logging.Filter):
    """Masks secrets in the standard library's records (botocore, asyncio, aiosmtplib...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
