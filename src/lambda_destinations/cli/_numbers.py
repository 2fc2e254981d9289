"""The command line's number types, whose refusals say what the option takes.

click's own say ``'abc' is not a valid integer range.`` (of a value that is no integer at all)
and ``0 is not in the range 1<=x<=1000.``; these say ``'abc' is not a whole number: use a whole
number from 1 to 1000.`` and ``0 is out of range: use a whole number from 1 to 1000.``, in the
words a setting's line uses (config).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from lambda_destinations._ranges import number_range

LIMIT_MAX = 1_000_000_000  # more than any store holds; keeps SQL's LIMIT in range
Convert = Callable[[Any, click.Parameter | None, click.Context | None], Any]


def use(kind: click.IntRange | click.FloatRange) -> str:
    """``: use`` and what ``kind`` takes ("a whole number from 1 to 1000"), or nothing when any
    number goes. Both bounds, however large: a value refused as above the upper one was
    refused as "out of range: use 0 or more" when the upper went unsaid."""
    bounds: dict[str, float] = {}
    if kind.min is not None:
        bounds["gt" if kind.min_open else "ge"] = kind.min
    if kind.max is not None:
        bounds["lt" if kind.max_open else "le"] = kind.max
    if not bounds:
        return ""
    noun = "a whole number" if isinstance(kind, click.IntRange) else "a number"
    return f": use {number_range(noun, bounds, _number)}"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _checked(
    kind: click.IntRange | click.FloatRange,
    parse: Convert,
    within: Convert,
    value: Any,
    param: click.Parameter | None,
    ctx: click.Context | None,
) -> Any:
    """``value`` read by ``parse`` and checked by ``within`` (click's own range check); each
    refusal says what ``kind`` takes."""
    try:
        number = parse(value, param, ctx)
    except click.BadParameter:
        kind.fail(f"{value!r} is not a {kind.name}{use(kind)}.", param, ctx)
    if not math.isfinite(number):  # nan and inf compare false to any bound
        kind.fail(f"{value!r} is not a finite number{use(kind)}.", param, ctx)
    try:
        return within(number, param, ctx)
    except click.BadParameter:
        kind.fail(f"{value} is out of range{use(kind)}.", param, ctx)


def _described(kind: click.IntRange | click.FloatRange, described: str) -> str:
    """click's description of ``kind``'s range for --help ("1<=x<=1000"), or nothing for a
    range without bounds: click's says "x<=None" of it."""
    return "" if kind.min is None and kind.max is None else described


class Whole(click.IntRange):
    """A whole number within bounds (click's IntRange, with refusals that give the range)."""

    name = "whole number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _checked(self, click.INT.convert, super().convert, value, param, ctx)

    def _describe_range(self) -> str:
        return _described(self, super()._describe_range())


class FiniteFloatRange(click.FloatRange):
    """A number within bounds that also refuses ``nan`` and ``inf``; its refusals give the
    range."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _checked(self, click.FLOAT.convert, super().convert, value, param, ctx)

    def _describe_range(self) -> str:
        return _described(self, super()._describe_range())
