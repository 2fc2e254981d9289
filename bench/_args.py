"""Argument types the bench scripts share: a value out of range is one usage line (exit 2), not
a traceback, a hang or figures divided by zero later."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number: use one from {low}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}: use {low} or more")
        return value

    return parse


def share(text: str) -> float:
    """An argparse ``type``: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: use one from 0 to 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a share: use a number from 0 to 1")
    return value
