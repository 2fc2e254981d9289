"""``quarantine list|show|resend``: the messages the worker gave up on, kept in the store."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
from typing import Any

import click

from lambda_destinations._text import capped, visible
from lambda_destinations._urls import queue_name
from lambda_destinations.cli._app import (
    EXIT_FAILED,
    EXIT_USAGE,
    confirm,
    echo_error,
    fail,
    group,
)
from lambda_destinations.cli._common import (
    aws_errors,
    dumps,
    format_time,
    opened_store,
    say_more,
    since_option,
    subcommand,
)
from lambda_destinations.cli._numbers import LIMIT_MAX, Whole
from lambda_destinations.cli._options import not_empty, settings_options
from lambda_destinations.cli._table import attribute_lines, field_lines, render_table
from lambda_destinations.config import Settings
from lambda_destinations.operations.quarantine import (
    ALREADY_RESENT,
    RESEND_CLAIM,
    NotResent,
    attribute_text,
    describe_quarantined,
    pretty_body,
    refusal,
    resend,
    resend_status,
    resending_since,
)
from lambda_destinations.redact import echoed
from lambda_destinations.store import ROW_ID_MAX, QuarantineRow, Store, utcnow

# --queue '' named no queue: it matched none, and `list` said "no quarantined messages".
_QUEUE_GIVEN = not_empty(
    "give the queue's name, URL or ARN, or leave the option out for every queue"
)

# The store's ids are 64-bit integers: a larger one is a usage error, not a driver's overflow.
QUARANTINE_ID = Whole(min=1, max=ROW_ID_MAX)


@group("quarantine")
def quarantine_group() -> None:
    """Messages the worker quarantined, kept in the store: list, show, resend.

    The store keeps every quarantined message whole: its body, its attributes and the reason.
    When a queue has no DLQ, that is the only copy.

    \b
    Examples:
      lambda-destinations quarantine list
      lambda-destinations quarantine show 12
      lambda-destinations quarantine resend 12 13 --yes
      lambda-destinations quarantine resend --all --queue orders-failures --yes
    """


async def _rows(
    settings: Settings, queue: str | None, since: dt.datetime | None, limit: int | None
) -> list[QuarantineRow]:
    async with opened_store(settings, writes=False) as store:
        # One row past the limit says whether more are quarantined (see say_more).
        return await store.list_quarantine(
            queue=queue, since=since, limit=None if limit is None else limit + 1
        )


async def _bodiless_rows(settings: Settings, queue: str | None) -> list[QuarantineRow]:
    """The messages `resend --all` sends, without their bodies and attributes: read a page at
    a time and let go, so that no more than a page's bodies (up to 1 MiB each) are held; each
    is read whole again just before its send (see :func:`_whole`)."""
    async with opened_store(settings, writes=False) as store:
        return [
            dataclasses.replace(row, body="", message_attributes={})
            async for page in store.quarantine_pages(queue=queue)
            for row in page
        ]


async def _whole(store: Store, row: QuarantineRow) -> QuarantineRow | None:
    """``row`` of `resend --all` with its body and attributes read again, and its resend mark
    as first read (the claim compares with what the operator was asked about); None: gone."""
    assert row.id is not None  # a row the store listed
    whole = await store.get_quarantine(row.id)
    if whole is not None:
        whole.resend_claimed_until = row.resend_claimed_until
    return whole


def _from(queue: str | None) -> str:
    """The queue an empty answer was filtered by, so that a mistyped name reads as one."""
    return f" from queue {echoed(queue)!r}" if queue else ""


def _reason(described: dict[str, Any]) -> str:
    return str(described["reason"])


@subcommand(quarantine_group, "list")
@click.option(
    "--queue",
    callback=_QUEUE_GIVEN,
    help="Only messages quarantined from this queue (name, URL or ARN).",
)
@since_option(help="Only messages quarantined at or after this time: 2h, 30m, 7d, or an ISO time.")
@click.option(
    "--limit", type=Whole(min=0, max=LIMIT_MAX), default=50, show_default=True, help="0: all."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@settings_options
def list_command(
    settings: Settings, queue: str | None, since: dt.datetime | None, limit: int, as_json: bool
) -> None:
    """Quarantined messages, newest first: when, from which queue, what it is, and why.

    STATUS says "resending since HH:MM:SS" (UTC) while a `quarantine resend` (or the console's
    Resend) holds a message: it is being sent back now, and another resend would skip it.

    \b
    Examples:
      lambda-destinations quarantine list
      lambda-destinations quarantine list --queue orders-failures --since 2h --json
    """
    rows = asyncio.run(_rows(settings, queue, since, limit or None))
    more = bool(limit) and len(rows) > limit
    rows = rows[: limit or None]
    now = utcnow()
    described = [describe_quarantined(r, now=now) for r in rows]
    if as_json:
        click.echo(dumps(described))
        return
    if not described:
        click.echo("no quarantined messages" + _from(queue), err=True)
        return
    click.echo(
        render_table(
            ["ID", "QUARANTINED (UTC)", "QUEUE", "KIND", "FUNCTION", "REASON", "STATUS"],
            [
                [
                    d["id"],
                    format_time(r.quarantined_at),
                    queue_name(r.queue),
                    d.get("kind"),
                    d.get("function_name"),
                    _reason(d),
                    resend_status(r, now) or "quarantined",
                ]
                for d, r in zip(described, rows, strict=True)
            ],
            flex=(5, 4, 2),
            right=(0,),
        )
    )
    if more:
        say_more(len(rows), "messages are quarantined")


async def _get(settings: Settings, ids: tuple[int, ...]) -> list[QuarantineRow]:
    async with opened_store(settings, writes=False) as store:
        found = [await store.get_quarantine(i) for i in ids]
    missing = [str(i) for i, row in zip(ids, found, strict=True) if row is None]
    if missing:
        fail(f"no quarantined message with id {', '.join(missing)}: see `quarantine list`")
    return [row for row in found if row is not None]


@subcommand(quarantine_group, "show")
@click.argument("quarantine_id", type=QUARANTINE_ID)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, body included.")
@settings_options
def show_command(settings: Settings, quarantine_id: int, as_json: bool) -> None:
    """One quarantined message whole: the reason, what it decodes to, attributes and body.

    \b
    Examples:
      lambda-destinations quarantine show 12
      lambda-destinations quarantine show 12 --json | jq -r .body
    """
    (row,) = asyncio.run(_get(settings, (quarantine_id,)))
    described = describe_quarantined(row, body=True)
    if as_json:
        click.echo(dumps(described))
        return
    # Times as every text output gives them (the JSON keeps ISO 8601).
    resending = resending_since(row)
    described["quarantined_at"] = f"{format_time(row.quarantined_at)} UTC"
    described["resending_since"] = f"{format_time(resending)} UTC" if resending else None
    fields = (
        ("id", "id"),
        ("quarantined", "quarantined_at"),
        ("queue", "queue"),
        ("message id", "message_id"),
        ("receives", "receive_count"),
        ("reason", "reason"),
        ("resending", "resending_since"),
        ("kind", "kind"),
        ("function", "function_arn"),
        ("condition", "condition"),
        ("error", "error_type"),
        ("not a record", "decode_error"),
    )
    width = max(len(label) for label, _ in fields) + 2  # two spaces after the longest label
    shown = [
        (label, described[name]) for label, name in fields if described.get(name) not in (None, "")
    ]
    click.echo(visible("\n".join(field_lines(shown, width))))
    # A body (or an attribute: SQS's size limit counts them together) carries up to 1 MiB:
    # cut as the console cuts it, saying where the whole is.
    whole = f"quarantine show {row.id} --json prints it whole"
    attributes = [
        (name, capped(attribute_text(v), whole))
        for name, v in (row.message_attributes or {}).items()
    ]
    if attributes:
        click.echo("\nattributes")
        click.echo(visible("\n".join(attribute_lines(attributes))))
    click.echo("\nbody")
    click.echo(visible(capped(pretty_body(row.body), whole)))


@subcommand(quarantine_group, "resend")
@click.argument("ids", nargs=-1, type=QUARANTINE_ID)
@click.option("--all", "every", is_flag=True, help="Every quarantined message (see --queue).")
@click.option(
    "--queue", callback=_QUEUE_GIVEN, help="With --all: only those quarantined from this queue."
)
@click.option("--keep", is_flag=True, help="Keep the stored copies after sending.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="The outcome as one JSON object.")
@settings_options
def resend_command(
    settings: Settings,
    ids: tuple[int, ...],
    every: bool,
    queue: str | None,
    keep: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Send quarantined messages back to the queue they came from, for the worker again.

    Each message's body and its own attributes are sent to its queue; then the stored copy
    is forgotten (--keep keeps it). Fix what quarantined them first (`doctor`), or they come
    back here. A handler that completed for a record before does not run again. A message
    another resend holds or resent already is skipped (not an error).

    \b
    Examples:
      lambda-destinations quarantine resend 12 13
      lambda-destinations quarantine resend --all --queue orders-failures --yes
    """
    _check_selection(ids, every=every, queue=queue)
    rows = (
        asyncio.run(_bodiless_rows(settings, queue))
        if every
        # An id given twice is one message: asked about, sent and reported once (its second
        # turn was skipped, as if "resent by another caller")
        else asyncio.run(_get(settings, tuple(dict.fromkeys(ids))))
    )
    if not rows:
        click.echo("no quarantined messages to resend" + _from(queue if every else None), err=True)
        if as_json:  # nothing to do is an outcome too: a script reads its object, empty
            click.echo(dumps({"resent": [], "skipped": [], "failed": []}))
        return
    if not yes:
        # The question on stderr, as every command asks: stdout is for the results (--json).
        if len(rows) == 1:
            where = "its queue"
        else:
            where = "their queue" if len({row.queue for row in rows}) == 1 else "their queues"
        confirm(f"Send {_count(len(rows), 'message')} back to {where}?")
    resending = _Resending(rows, every=every)
    with aws_errors(settings):
        _run(settings, resending, keep=keep, as_json=as_json)
    resending.report(as_json=as_json)
    if resending.failed:
        raise SystemExit(EXIT_FAILED)


def _check_selection(ids: tuple[int, ...], *, every: bool, queue: str | None) -> None:
    """Ids or --all, and --queue only with --all: given ids, it was ignored, and the messages
    went to the queues they came from, not to the one it named."""
    if not ids and not every:
        fail("give quarantine ids, or --all", EXIT_USAGE)
    if ids and every:
        fail("give quarantine ids or --all, not both", EXIT_USAGE)
    if ids and queue is not None:
        fail(
            "--queue goes with --all, whose messages it narrows to those quarantined from one "
            "queue; each id is resent to the queue it came from: leave --queue out, or give "
            "--all instead of the ids",
            EXIT_USAGE,
        )


def _run(settings: Settings, resending: _Resending, *, keep: bool, as_json: bool) -> None:
    """The resends (:func:`_resend`); when they are cut short (Ctrl-C, the endpoint or the
    store lost midway), what was sent and what was not, reported before the line of what
    stopped them (and its exit code)."""
    try:
        asyncio.run(_resend(settings, resending, keep=keep))
    except BaseException:
        resending.report_cut_short(as_json=as_json)
        raise


# A message whose send was cut off before SQS answered: in the queue or not, no one can say.
_IN_DOUBT = "in doubt, may have reached its queue: cut off before SQS answered"


@dataclasses.dataclass
class _Resending:
    """How far a resend got: for its report, also when it is cut short."""

    rows: list[QuarantineRow]
    every: bool  # --all: the same command again sends what was not sent
    started: bool = False  # the sends began
    sent: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # another resend's
    failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # its queue refused it
    cut: dict[str, Any] | None = None  # the message whose send was cut off: it may have arrived

    def report(self, *, as_json: bool) -> None:
        """Each message's outcome on stdout (skips and failures on stderr); a tally."""
        if as_json:
            click.echo(dumps({"resent": self.sent, "skipped": self.skipped, "failed": self.failed}))
            return
        for item in self.sent:
            click.echo(f"{item['id']} → {queue_name(item['queue'])} as {item['new_message_id']}")
        for item in self.skipped:
            echo_error(f"{item['id']}: skipped: {item['reason']}")
        for item in self.failed:
            not_sent = "" if item["error"] == _IN_DOUBT else "not sent: "
            echo_error(f"{item['id']}: {not_sent}{item['error']}")
        click.echo(
            f"resent {len(self.sent)} · skipped {len(self.skipped)} · failed {len(self.failed)}",
            err=True,
        )

    def report_cut_short(self, *, as_json: bool) -> None:
        """The report of a resend stopped after its sends began and before they ended: each
        message resent, in doubt (cut off mid-send) or not sent; then one line."""
        ended = {item["id"] for item in (*self.sent, *self.skipped, *self.failed)}
        if not self.started or len(ended) == len(self.rows):
            return
        cut_id = self.cut["id"] if self.cut else None
        rest = [row for row in self.rows if row.id not in ended and row.id != cut_id]
        if self.cut is not None:
            self.failed.append(self.cut)
        self.skipped += [
            {
                **_item(row),
                "reason": "not sent: the resend stopped before its turn; resend it again",
            }
            for row in rest
        ]
        self.report(as_json=as_json)
        parts = [f"stopped after resending {len(self.sent)} of {len(self.rows)}"]
        if self.cut is not None:
            parts.append(
                f"{cut_id} was cut off mid-send and may have reached its queue (its stored "
                f"copy stays, and a resend skips it for {RESEND_CLAIM / 60:.0f} minutes: "
                "look for it in the queue first; a copy resent twice is absorbed by the "
                "worker's idempotency)"
            )
        if rest:
            again = (
                "the same resend again sends " + ("it" if len(rest) == 1 else "them")
                if self.every
                else f"`quarantine resend {' '.join(str(row.id) for row in rest)}` sends "
                + ("it" if len(rest) == 1 else "them")
            )
            parts.append(f"{len(rest)} not sent ({again})")
        click.echo("; ".join(parts), err=True)


def _item(row: QuarantineRow) -> dict[str, Any]:
    return {"id": row.id, "queue": row.queue, "message_id": row.message_id}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


async def _resend(settings: Settings, resending: _Resending, *, keep: bool) -> None:
    """Send each of ``resending.rows`` back, in order; each outcome in ``resending`` as it
    comes: resent, skipped (another resend holds or sent it), failed (its queue refused it)."""
    # Imported here: aiobotocore costs `list` and `show`, which do not call AWS, a third of a
    # second of CPU.
    from botocore.exceptions import ClientError

    from lambda_destinations.aws import AwsClients
    from lambda_destinations.retrying import answered

    async with (
        opened_store(settings, writes=True) as store,
        AwsClients(settings) as aws,
    ):
        sqs = await aws.sender("sqs")  # a send whose answer was lost is not sent again
        resending.started = True
        for listed in resending.rows:
            item = _item(listed)
            row = await _whole(store, listed) if resending.every else listed
            if row is None:  # another resend sent it since it was listed
                resending.skipped.append({**item, "reason": ALREADY_RESENT})
                continue
            sent: list[str] = []
            sending: list[bool] = []  # claimed, its send begun: cut short now, it is in doubt
            try:
                new_id = await resend(
                    store,
                    sqs,
                    row,
                    keep=keep,
                    on_sent=sent.append,
                    on_sending=functools.partial(sending.append, True),
                )
            except NotResent as exc:  # another resend sent it, or is sending it: not twice
                resending.skipped.append({**item, "reason": str(exc)})
                continue
            except ClientError as exc:  # this message's queue refused it; the others may not
                resending.failed.append({**item, "error": refusal(exc, row, sqs)})
                continue
            except BaseException as exc:  # cut short: the endpoint lost, Ctrl-C
                if sent:
                    resending.sent.append({**item, "new_message_id": sent[0]})
                elif sending and not answered(exc):  # the send may have reached the queue
                    resending.cut = {**item, "error": _IN_DOUBT}
                raise
            resending.sent.append({**item, "new_message_id": new_id})
