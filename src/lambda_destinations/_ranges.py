"""The range a number takes, in words, for the lines that refuse one: a setting's (config) and
a command-line option's (cli._numbers) say it alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def number_range(noun: str, bounds: Mapping[str, float], number: Callable[[float], str]) -> str:
    """What ``noun`` ("a whole number", "a number", "a duration") may be, by its ``bounds``
    (``ge``, ``gt``, ``le``, ``lt``, each shown by ``number``): "a whole number from 1 to
    1000", "0 or more", "a number above 0, up to 600"; the noun alone when none is given."""
    if "ge" in bounds:
        low = f"{number(bounds['ge'])} or more"
        if "le" in bounds:
            return f"{noun} from {number(bounds['ge'])} to {number(bounds['le'])}"
    elif "gt" in bounds:
        low = f"{noun} above {number(bounds['gt'])}"
    else:
        low = noun
    if "le" in bounds:
        return f"{low}, up to {number(bounds['le'])}"
    if "lt" in bounds:
        return f"{low} and below {number(bounds['lt'])}"
    return low
