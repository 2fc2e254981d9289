"""lambda-destinations: a worker for AWS Lambda asynchronous-invocation destination queues."""

from __future__ import annotations

import functools


@functools.cache
def _version() -> str:
    # Read from the installed metadata on first use: importlib.metadata costs every command
    # tens of milliseconds at start, and only --version and the AWS user agent need it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lambda-destinations")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__"]
