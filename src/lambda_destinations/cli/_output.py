"""stdout and stderr whose write errors say which stream's they are, and stdout which writes
any text it is given; stdin read as a file is, closed too.

Python reports a reader that went away (``| head`` that has read enough) as BrokenPipeError, a
ConnectionError like a dropped connection to AWS, and a full disk under ``> file`` as a bare
OSError, like any other. The commands' stdout is wrapped here so that both arrive as
:class:`OutputUnwritable`, which ``reports_errors`` turns into a quiet exit (141, as a tool that
SIGPIPE ends) or one line. So is stderr, where the summaries, prompts and error lines go: its
reader gone (``2>&1 | head``, a pager quit) had read as "cannot reach the AWS endpoint"; it
ends the command as stdout's does, without a line (it would go where nothing is read).

Text from the store may hold lone surrogates, which UTF-8 cannot encode: stdout writes them as
U+FFFD (:func:`~lambda_destinations._text.printable`), in tables and JSON alike.

Where stdout's encoding is not UTF-8 (``PYTHONIOENCODING=latin-1``, a terminal in an ISO 8859
locale), a character it has no bytes for is written as a Python escape (``\\u2192``, as stderr
writes it), not a UnicodeEncodeError; JSON is written with JSON's own escapes there
(:func:`takes`), so that it stays JSON of the same values.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import sys
from typing import TYPE_CHECKING, TextIO

from lambda_destinations._text import printable

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class OutputUnwritable(OSError):
    """Writing stdout or stderr failed: its reader went away (EPIPE), where it goes is full,
    or a terminal is gone (EIO)."""

    def __init__(self, errno_: int | None, strerror: str | None, fd: int = 1) -> None:
        super().__init__(errno_, strerror)
        self.fd = fd

    @property
    def reader_left(self) -> bool:
        return self.errno == errno.EPIPE

    @property
    def closed_at_start(self) -> bool:
        return self.errno == errno.EBADF and self.fd == 1

    @property
    def on_stderr(self) -> bool:
        return self.fd == 2


class _Stdout(io.FileIO):
    """The file descriptor under stdout or stderr (left open at the end), raising
    OutputUnwritable where a write fails."""

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise OutputUnwritable(exc.errno, exc.strerror, self.fileno()) from None


class _Text(io.TextIOWrapper):
    """stdout's text layer: lone surrogates become U+FFFD instead of a UnicodeEncodeError."""

    def write(self, text: str, /) -> int:
        return super().write(printable(text))


def takes(text: str) -> bool:
    """Whether stdout's encoding has bytes for every character of ``text`` (lone surrogates
    aside: stdout writes them as U+FFFD)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return True
    # An ASCII stdout is one click writes UTF-8 to (it takes ASCII for a misconfiguration).
    if name.startswith("utf") or name == "ascii" or text.isascii():
        return True
    try:
        printable(text).encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


class _Closed(_Stdout):
    """stdout closed at start (``>&-``): its first write fails as writing a closed file does
    (EBADF), so that a command whose job is its output does not claim success; what follows
    that failure, its report under way, goes nowhere."""

    failed = False

    def write(self, data: ReadableBuffer, /) -> int:
        if not self.failed and memoryview(data).nbytes:
            self.failed = True
            raise OutputUnwritable(errno.EBADF, os.strerror(errno.EBADF), 1)
        return memoryview(data).nbytes


def wrap_stdout() -> None:
    """Put :class:`_Stdout` under ``sys.stdout`` and ``sys.stderr`` (as :class:`_Text`), with
    the same encoding and buffering; a character the encoding has no bytes for is written as
    an escape. stdout closed at start gets :class:`_Closed`."""
    sys.stdout = _closed_stdout() if sys.stdout is None else _wrapped(sys.stdout)
    sys.stderr = _wrapped(sys.stderr)


def _closed_stdout() -> TextIO | None:
    """A stdout for a process started without one: file descriptor 1 is taken by /dev/null
    first, so that the next file opened (the SQLite store) does not get it, where a write meant
    for stdout, or its discarding, would land on that file."""
    try:
        os.fstat(1)
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != 1:
            os.dup2(devnull, 1)
            os.close(devnull)
    else:
        return None  # fd 1 is there: stdout was replaced or set aside on purpose
    return _Text(
        io.BufferedWriter(_Closed(1, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=False,
    )


def _wrapped(stream: TextIO | None) -> TextIO | None:
    if not isinstance(stream, io.TextIOWrapper):  # closed at start (None), or replaced
        return stream
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return stream
    stream.flush()
    return _Text(
        io.BufferedWriter(_Stdout(fd, "w", closefd=False)),
        encoding=stream.encoding,
        errors="backslashreplace",
        line_buffering=stream.line_buffering,
        write_through=stream.write_through,
    )


def discard_stdout(fd: int = 1) -> None:
    """Send what stdout (or stderr: ``fd`` 2) still holds, and anything after, to /dev/null:
    once writing it has failed, the exit's last flush must not fail again."""
    # Imported here: structlog, which logs brings, costs every command's start-up.
    from lambda_destinations.logs import write_nowhere

    if (sys.stdout if fd == 1 else sys.stderr) is not None:
        write_nowhere(fd)


def read_stdin(limit: int = -1) -> bytes:
    """Standard input's bytes, at most ``limit``. A process started without it (``<&-``, a
    service with no input) has no ``sys.stdin``: that is the OSError (EBADF) reading a closed
    file gives, which a command reports as any input it cannot read."""
    if sys.stdin is None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return sys.stdin.buffer.read(limit)
