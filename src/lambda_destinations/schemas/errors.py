"""The one exception :func:`~lambda_destinations.schemas.decode` raises."""

from __future__ import annotations


class DecodeError(ValueError):
    """A message that is not a Lambda record the worker can handle; ``reason`` says why.

    ``reason`` is a single line meant for people (logs, the quarantine store, the CLI), such as
    ``"body is not JSON: Expecting value at line 1 column 1"``. The worker quarantines the
    message with it; retrying cannot help.
    """

    def __init__(self, reason: str) -> None:
        # One line, always: reasons end up in message attributes and log lines.
        lines = (line.strip() for line in reason.splitlines())
        reason = " ".join(line for line in lines if line) or "message does not decode"
        super().__init__(reason)
        self.reason = reason
