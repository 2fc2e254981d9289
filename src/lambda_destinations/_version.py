"""The installed version of the package, read once from its metadata."""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """The installed distribution's version (``0.0.0`` from a source tree without install)."""
    # Read from the installed metadata on first use: importlib.metadata costs every command
    # tens of milliseconds at start, and only --version and the AWS user agent need it.
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("lambda-destinations")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0"
