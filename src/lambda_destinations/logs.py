"""structlog set-up: JSON lines in containers, a readable console in a terminal.

Configured once by the entry point (the one process-wide setting the project keeps).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import structlog

from lambda_destinations._json_lines import cut_middle, fitted
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
    global _final_lines_json
    _final_lines_json = fmt == "json"
    if fmt == "auto":
        fmt = "console" if sys.stderr is not None and sys.stderr.isatty() else "json"
    renderer: list[structlog.typing.Processor]
    if fmt == "json":
        # Rendered, then shortened where the line would not pass a container runtime whole
        # (which bounds each field too: a traceback keeps its frames' structure).
        renderer = [_json_line, _fitted]
    else:
        renderer = [_capped, _escaped, structlog.dev.ConsoleRenderer(colors=_colours())]
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
        redact_event,  # passwords and addresses never reach a line; before any cut, which
        *renderer,  # could split a password from what marks it
    ]
    structlog.configure(
        processors=[*hiding, *stamped, *written],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_log_lines,
        cache_logger_on_first_use=True,
    )
    _standard_logging(stamped, written, max(logging.WARNING, LEVELS[level]))


_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)

# Whether the line a command ends on (its error, `interrupted`) is a JSON log line: where the
# JSON format was asked for (a container's log pipeline parses every line), not where `auto`
# chose it (a script or a person reading stderr in a file keeps the plain line).
_final_lines_json = False


def final_line(text: str, *, exit_code: int, level: Literal["warning", "error"]) -> bool:
    """Log the line a command ends on as a JSON object (``text`` its event, with ``level``
    and ``exit_code``) where the JSON log format was asked for; False where it was not, for
    the caller to write the plain line."""
    if not _final_lines_json:
        return False
    # Whatever log_level leaves out (`terminated` is a warning): the last line says why the
    # process ended, and is not one log line among others.
    logger = structlog.wrap_logger(
        _log_lines(), wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
    )
    logger.log(LEVELS[level], text, exit_code=exit_code)
    return True


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
    for name in ("botocore.credentials", "aiobotocore.credentials"):
        refreshes = logging.getLogger(name)
        if not any(isinstance(f, _RefreshFailures) for f in refreshes.filters):
            refreshes.addFilter(_RefreshFailures())


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


def _colours() -> bool:
    """Whether console lines are coloured: on a terminal, unless ``NO_COLOR`` is set to
    anything (no-color.org) or the terminal says it shows none (``TERM=dumb``: Emacs' shell, a
    CI's pseudo-terminal), where the escape codes would be shown as text."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stderr is not None and sys.stderr.isatty()


# A write's errors that say its reader will never read again: a pipe's reader gone (EPIPE), a
# terminal gone with its ssh session or window (EIO).
GONE = (errno.EPIPE, errno.EIO)


def write_nowhere(fd: int) -> None:
    """Point file descriptor ``fd`` at /dev/null: once writing there has failed for good
    (:data:`GONE`), what its stream still holds and anything after go nowhere, and the exit's
    last flush does not fail again (Python's exit code 120 and "Exception ignored" line)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class _LogLines(structlog.PrintLogger):
    """Log lines on stderr; a line that cannot be written is dropped, as the standard
    library's logging drops it.

    The terminal of a worker run over ssh is gone once the session drops (its writes fail with
    EIO), and a pipe's reader may leave (``2>&1 | head``, EPIPE): a log call that raised then
    failed what it was reporting on. The line of SIGHUP's or SIGTERM's handler raised before
    it stopped the worker, which then ran on, every further signal's line failing the same way.
    Where stderr was closed at start (``2>&-``, ``sys.stderr`` None) nothing is written:
    PrintLogger would write to stdout, into a command's JSON.
    """

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except OSError as exc:
            if exc.errno in GONE:  # for good: what it holds, and the exit's flush, go nowhere
                with contextlib.suppress(OSError, ValueError):
                    write_nowhere(self._file.fileno())
        except ValueError:  # a file closed
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _log_lines(*_args: Any) -> _LogLines | structlog.ReturnLogger:
    return structlog.ReturnLogger() if sys.stderr is None else _LogLines(sys.stderr)


# Characters of one field of a console line (a traceback, an error's text): past it, its start
# and its end, where a traceback names the exception. A handler's error that carries a payload
# of megabytes would otherwise be written whole at every retry. A JSON line is bounded as a
# whole instead (_json_lines.LINE_MAX); the console's lines are a person's to read, and a
# terminal does not split them: a traceback there is lines of its own, each frame whole.
LOGGED_MAX = 32 * 1024


def _json_line(_logger: Any, _method: str, event: structlog.typing.EventDict) -> str:
    """The event as one JSON object, whatever a handler logged: an object JSON has no type for
    as its ``repr`` (masked: :func:`_shown`), and where ``json`` refuses the values (NaN and the
    infinities, which it would write as JSON no parser of a log pipeline reads; an integer past
    Python's limit of digits; a dict's tuple key), those values as :func:`_plain` writes them.
    The log call raised instead, failing the handler that made it."""
    try:
        return json.dumps(event, default=_shown, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_plain(event), default=_shown)


def _shown(value: object) -> str:
    """An object that is no text, number or container, as a line shows it: its ``repr``,
    masked (a yarl URL's password, an aiohttp response's webhook URL)."""
    return redact(_written(value, repr))


def _written(value: object, how: Callable[[object], str]) -> str:
    """``how(value)`` (``str`` or ``repr``): of the value :func:`_plain` makes of it where
    that raises (an integer past Python's limit of digits in it), and saying so where even
    that does (a ``__repr__`` that fails: a handler's class, any bug in it)."""
    try:
        return how(value)
    except Exception:  # noqa: BLE001 - a handler's object, any bug in its __repr__
        try:
            return how(_plain(value))
        except Exception:  # noqa: BLE001
            return f"<{type(value).__name__} object: its {how.__name__}() failed>"


def _plain(value: Any) -> Any:
    """``value`` with what JSON cannot carry as text: NaN and the infinities (``"nan"``,
    ``"inf"``), an integer too long for ``str`` (its size), a key that is no text or number
    (its masked ``repr``); dicts and lists (the sets and tuples too) walked through."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            str(value)
        except ValueError:
            return f"<an integer of {value.bit_length():,} bits>"
        return value
    if isinstance(value, Mapping):
        return {_plain_key(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value


def _plain_key(key: object) -> object:
    if isinstance(key, str):
        return key
    plain = _plain(key)
    return plain if plain is None or isinstance(plain, str | int | float) else _shown(key)


def _fitted(_logger: Any, _method: str, line: Any) -> str:
    """The JSON line rendered, in 16 KiB with its newline (see _json_lines)."""
    return fitted(line)


def _capped(_logger: Any, _method: str, event: structlog.typing.EventDict) -> Any:
    for key, value in event.items():
        if isinstance(value, str) and len(value) > LOGGED_MAX:
            event[key] = cut_middle(value, LOGGED_MAX)
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
        if key == "event" and not isinstance(value, str):  # the renderer writes its str()
            value = event[key] = redact(_written(value, str))
        if not isinstance(value, str):
            if not _simple(value):
                event[key] = _shown_object(value)
        elif key in ("exception", "stack"):
            event[key] = visible(value)
        elif "\n" in value or unshown(value):
            event[key] = _Quoted(value)
    return event


# Bits of an integer surely shown by str(): Python refuses past 4,300 digits, or as few as 640
# where a program lowers its limit (sys.set_int_max_str_digits), some 2,100 bits.
_SHORT_INT_BITS = 2000


def _simple(value: object) -> bool:
    """Whether the renderer's ``repr`` of ``value`` is safe as it is: no object's own."""
    if isinstance(value, int):
        return value.bit_length() <= _SHORT_INT_BITS
    return value is None or isinstance(value, float)


def _shown_object(value: object) -> object:
    """An object (a dict or a list too, what they hold may be any object) as the console
    shows it: its ``repr``, masked, its control characters spelled as escapes, where that
    differs from the renderer's own ``repr`` of it, or that would raise."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a handler's object, any bug in its __repr__
        return _Written(visible(_shown(value)))
    shown = visible(redact(text))
    return value if shown == text else _Written(shown)


class _Written:
    """A log value the console writes as it is (:func:`_shown_object`'s text)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _hiding(hide: Callable[[Mapping[str, Any]], bool]) -> structlog.typing.Processor:
    def processor(_logger: Any, _method: str, event: structlog.typing.EventDict) -> Any:
        if hide(event):
            raise structlog.DropEvent
        return event

    return processor


class _RedactingFilter(logging.Filter):
    """Masks secrets in the standard library's records (botocore, asyncio, aiosmtplib...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = _message(record)
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _message(record: logging.LogRecord) -> str:
    """The record's message; where its arguments do not fit its format (a library's bug), the
    format and the arguments as they are, the record's message from now on. ``getMessage``
    raised instead, from a filter: into the library's own call (the handler's
    ``--- Logging error ---`` does not catch it there), and past any masking."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a library's format and arguments, any mismatch
        args = _written(record.args, repr)
        record.msg, record.args = f"{_written(record.msg, str)} (its arguments: {args})", None
        return record.msg


# Seconds between two of botocore's lines that refreshing temporary credentials failed.
REFRESH_FAILURE_EVERY = 60.0


class _RefreshFailures(logging.Filter):
    """botocore's warning that refreshing temporary credentials (a task or pod role's) failed
    comes with a traceback at every request while the source fails (an ECS agent away), up to
    one a second a poller: one line with the error instead, at most every
    REFRESH_FAILURE_EVERY seconds. In botocore's advisory window the current credentials still
    serve; in its mandatory one each call fails, and the worker's own lines say so."""

    def __init__(self) -> None:
        super().__init__()
        self._said_at = -REFRESH_FAILURE_EVERY

    def filter(self, record: logging.LogRecord) -> bool:
        if not _message(record).startswith("Refreshing temporary credentials failed"):
            return True
        error = record.exc_info[1] if record.exc_info else None
        if getattr(error, "said_by_the_call", False):  # a role of accounts, said with its fix
            return False
        now = time.monotonic()
        if now - self._said_at < REFRESH_FAILURE_EVERY:
            return False
        self._said_at = now
        if error is not None:
            record.msg = f"{record.getMessage().rstrip('.')}: {type(error).__name__}: {error}"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True
