"""``replay``: invoke failed invocations again with their original payloads."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

import click

from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._app import EXIT_FAILED, EXIT_USAGE, command, confirm, fail
from lambda_destinations.cli._common import (
    aws_errors,
    dumps,
    has_filters,
    invokable_qualifier,
    legacy_function_option,
    opened_store,
    operator_identity,
    rate_option,
    say_no_failure,
    selection_options,
    stored_ids,
    whole_ids,
)
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import render_table
from lambda_destinations.config import Settings
from lambda_destinations.operations import TRIGGER_MANUAL, RateLimiter
from lambda_destinations.operations.replay import (
    ErrorReason,
    ReplayResult,
    ReplayState,
    SkipReason,
    cut_short,
    invoked_label,
    replay_invocation,
    version_hints,
)
from lambda_destinations.schemas import FunctionArn
from lambda_destinations.store import (
    FailureStatus,
    InvocationCursor,
    InvocationFilter,
    InvocationRow,
    Store,
)
from lambda_destinations.times import utc_text, utcnow

_PLAN_ROWS = 20  # rows of the plan shown before the confirmation
# The oldest event Lambda's own asynchronous retries take (MaximumEventAgeInSeconds at most).
LAMBDA_MAX_EVENT_AGE = dt.timedelta(hours=6)


@command("replay")
@click.argument("request_ids", nargs=-1, metavar="[REQUEST_ID...]", callback=stored_ids)
@selection_options(limit_default=0)
@click.option("--dry-run", is_flag=True, help="List exactly what would be invoked; invoke nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@rate_option(default=10.0, help="Invocations per second at most (0: no limit).")
@click.option("--force", is_flag=True, help="Replay again records already replayed.")
@legacy_function_option("The function to invoke for legacy DLQ messages, which do not name it.")
@click.option(
    "--qualifier",
    metavar="VERSION|ALIAS",
    callback=invokable_qualifier,
    help="Invoke this version or alias (or $LATEST) of each record's function instead of the "
    "one the record names (a published version runs its old code again).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The outcome as one JSON object: results, counts, not_found.",
)
@settings_options
def replay_command(
    settings: Settings,
    request_ids: tuple[str, ...],
    selection: InvocationFilter,
    dry_run: bool,
    yes: bool,
    rate: float,
    force: bool,
    legacy_function: str | None,
    qualifier: str | None,
    as_json: bool,
) -> None:
    """Invoke failed invocations again, asynchronously, with their original payloads.

    Select by REQUEST_ID, by filters, or both (filters then narrow the request ids). Without
    request ids and without --status, the open and replayed failures match (replayed ones are
    skipped unless --force); ignored and recovered ones never match by filters alone.

    Each attempt is written to the store's replay ledger with who ran it, and the record's
    status becomes `replayed`. Stream batch failures are never replayed.

    Each record's function ARN (and qualifier) is invoked: a published version's (orders-api:12)
    runs its old code again; --qualifier live invokes the alias instead (the ledger says which).

    \b
    Examples:
      lambda-destinations replay 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
      lambda-destinations replay --function 'orders-*' --since 2h --dry-run
      lambda-destinations replay --error-type TimeoutError --since 1d --rate 2 --yes
      lambda-destinations replay --status open --limit 50 --json
      lambda-destinations replay --function orders-api --since 1d --qualifier live

    Exit status: 0 when every selected record was invoked or skipped (nothing to do is not a
    failure), 1 when an invocation failed or a request id is not in the store, 2 for no
    selection at all.
    """
    if not request_ids and not has_filters(selection):
        fail(
            "name request ids or a filter (--function, --error-type, --since, --status, ...); "
            "`--status open` selects every open failure",
            EXIT_USAGE,
        )
    if selection.statuses is None and not request_ids:
        selection.statuses = [FailureStatus.OPEN, FailureStatus.REPLAYED]
    if request_ids:
        selection.request_ids = list(request_ids)
    replay = _Replay(
        settings,
        selection,
        request_ids,
        requested_by=operator_identity(),
        force=force,
        legacy_function=legacy_function,
        rate=rate,
        qualifier=qualifier,
    )
    with aws_errors(settings):
        missing, results = _run(replay, dry_run=dry_run, yes=yes, as_json=as_json)
    if _report(results, missing, dry_run=dry_run, as_json=as_json):
        raise SystemExit(EXIT_FAILED)


def _run(
    replay: _Replay, *, dry_run: bool, yes: bool, as_json: bool
) -> tuple[list[str], list[ReplayResult]]:
    """The plan and the replays (:func:`_plan_and_run`); when they are cut short (Ctrl-C, the
    endpoint or the store lost midway), what was sent and what was not, reported before the
    line of what stopped them (and its exit code)."""
    progress = _Progress()
    try:
        return asyncio.run(_plan_and_run(replay, progress, dry_run=dry_run, yes=yes))
    except BaseException:
        progress.report_cut_short(as_json=as_json)
        raise


@dataclasses.dataclass
class _Progress:
    """How far a run's invocations got: for its report when it is cut short."""

    planned: list[ReplayResult] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    to_invoke: list[InvocationRow] = dataclasses.field(default_factory=list)
    done: list[ReplayResult] = dataclasses.field(default_factory=list)
    cut: ReplayResult | None = None  # the record whose turn it was: what became of it

    def planned_of(self, row: InvocationRow) -> ReplayResult:
        """What the plan said of ``row``."""
        return next(p for p in self.planned if p.key == row.key)

    def report_cut_short(self, *, as_json: bool) -> None:
        """The report of a run stopped after its invocations began and before they ended:
        each record invoked, in doubt (cut off mid-call) or not sent; then one line."""
        if not self.to_invoke or len(self.done) == len(self.to_invoke):
            return
        rest = self.to_invoke[len(self.done) + (self.cut is not None) :]
        by_key = {r.key: r for r in self.done}
        if self.cut is not None:
            by_key[self.cut.key] = self.cut
        for row in rest:
            by_key[row.key] = dataclasses.replace(
                self.planned_of(row),
                state=ReplayState.SKIPPED,
                attempt=None,
                skip=SkipReason.INTERRUPTED,
                detail="not sent: the run stopped before its turn; run the replay again",
            )
        _report(
            [by_key.get(p.key, p) for p in self.planned],
            self.missing,
            dry_run=False,
            as_json=as_json,
        )
        invoked = sum(1 for r in by_key.values() if r.state is ReplayState.INVOKED)
        parts = [f"stopped after invoking {invoked} of {len(self.to_invoke)}"]
        if self.cut is not None and self.cut.error is ErrorReason.IN_DOUBT:
            parts.append(
                f"{self.cut.request_id or self.cut.key} was cut off mid-call and may have "
                "reached Lambda (a replay again skips it: check `failures show`, then --force "
                "if it did not run)"
            )
        if rest:
            parts.append(
                f"{len(rest)} not sent (the same replay again sends them and skips those invoked)"
            )
        click.echo("; ".join(parts), err=True)


@dataclasses.dataclass(frozen=True)
class _Replay:
    """What one ``replay`` command selects, and how it replays each record."""

    settings: Settings
    selection: InvocationFilter
    request_ids: tuple[str, ...]
    requested_by: str
    force: bool
    legacy_function: str | None
    rate: float
    qualifier: str | None = None

    async def one(
        self,
        store: Store,
        lam: Any,
        row: InvocationRow,
        *,
        dry_run: bool = False,
        limiter: RateLimiter | None = None,
        planned: int | None = None,
    ) -> ReplayResult:
        return await replay_invocation(
            store,
            lam,
            row,
            trigger=TRIGGER_MANUAL,
            requested_by=self.requested_by,
            force=self.force,
            dry_run=dry_run,
            legacy_function=self.legacy_function,
            qualifier=self.qualifier,
            limiter=limiter,
            planned=planned,
        )


async def _plan_and_run(
    replay: _Replay, progress: _Progress, *, dry_run: bool, yes: bool
) -> tuple[list[str], list[ReplayResult]]:
    """The selected records' plan, then (unless a dry run) their replays once confirmed.

    Returns the request ids not found and one result a selected record, in the plan's order.
    """
    async with opened_store(replay.settings, writes=not dry_run) as store:
        if replay.request_ids:
            whole = await whole_ids(store, replay.request_ids)
            selection = dataclasses.replace(replay.selection, request_ids=whole)
            replay = dataclasses.replace(replay, request_ids=tuple(whole), selection=selection)
        rows, missing = await _select(store, replay)
        planned = _once_each(
            rows, [await replay.one(store, None, row, dry_run=True) for row in rows]
        )
        say_no_failure(missing)
        to_invoke = [
            row for row, p in zip(rows, planned, strict=True) if p.state is ReplayState.WOULD_INVOKE
        ]
        if dry_run or not to_invoke:
            _say_before(planned, to_invoke, replay.qualifier)
            return missing, planned
        if not yes:
            _confirm(planned, to_invoke, replay)
        else:
            _say_before(planned, to_invoke, replay.qualifier)
        progress.planned, progress.missing, progress.to_invoke = planned, missing, to_invoke
        invoked = await _invoke(store, replay, progress)
        by_key = {r.key: r for r in invoked}
        return missing, [by_key.get(p.key, p) for p in planned]


def _once_each(rows: Sequence[InvocationRow], planned: list[ReplayResult]) -> list[ReplayResult]:
    """The plan with each failed invocation invoked once: a record of a request id an earlier
    one to invoke has (an on-failure destination's and a dead-letter queue's of the same event)
    is skipped."""
    first: dict[str, str] = {}
    for n, (row, plan) in enumerate(zip(rows, planned, strict=True)):
        if plan.state is not ReplayState.WOULD_INVOKE or not row.request_id:
            continue
        if row.request_id not in first:
            first[row.request_id] = row.key
            continue
        planned[n] = dataclasses.replace(
            plan,
            state=ReplayState.SKIPPED,
            attempt=None,
            skip=SkipReason.SAME_INVOCATION,
            detail=f"the same invocation as {first[row.request_id]}, invoked in this run",
        )
    return planned


def _say_before(
    planned: Sequence[ReplayResult], to_invoke: Sequence[InvocationRow], qualifier: str | None
) -> None:
    """What the operator should know before the records ``planned`` are invoked: how old the
    oldest is, and (unless ``--qualifier`` chose) which published versions they run again."""
    _say_age(to_invoke)
    if qualifier is None:
        for line in version_hints(planned):
            click.echo(line, err=True)


def _say_age(rows: Sequence[InvocationRow]) -> None:
    """Say how old the oldest record to invoke is, when it is older than Lambda retries an
    event (``MaximumEventAgeInSeconds``, 6 hours at most): a replay invokes afresh, so the
    function gets a payload from days ago (a backlog's) as a new event, and nothing else says
    so before the question."""
    if not rows:
        return
    oldest = min(row.timestamp or row.first_seen_at for row in rows)
    age = utcnow() - oldest
    if age <= LAMBDA_MAX_EVENT_AGE:
        return
    hours = age.total_seconds() / 3600
    ago = f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"
    click.echo(
        f"the oldest of these failed {ago} ago ({utc_text(oldest, '%Y-%m-%d %H:%M')}"
        " UTC): its function runs that payload now, as a new event (Lambda itself retries an "
        "event for 6 hours at most)",
        err=True,
    )


async def _select(store: Store, replay: _Replay) -> tuple[list[InvocationRow], list[str]]:
    """The rows selected, oldest first, and the named request ids that match no failure."""
    rows = await store.list_invocations(replay.selection)
    missing = []
    if replay.request_ids:
        found = {r.request_id for r in rows} | {r.key for r in rows}
        for ident in replay.request_ids:
            if ident in found:
                continue
            row = await store.get_invocation(ident)
            if row is None or row.succeeded is True:
                missing.append(ident)
            elif row.key == ident and await _matches(store, row, replay.selection):
                rows.append(row)  # named by its key rather than its request id
                found.add(ident)  # once, however often it is named
            # else: a request id the filters leave out
    # Oldest first: replays happen in the order the failures did. Read newest first, as
    # `--limit` chooses (the newest N, as `failures list` shows them), then sorted oldest
    # first, the rows named by their key (found after that read) in their place among them,
    # and `--limit` kept with them: the newest N of all named.
    rows.sort(key=InvocationCursor.after)
    limit = replay.selection.limit
    return (rows[-limit:] if limit else rows), missing


def _confirm(
    planned: Sequence[ReplayResult], to_invoke: Sequence[InvocationRow], replay: _Replay
) -> None:
    """Show the plan (and the age of its oldest record) and ask; abort unless the operator
    says yes."""
    # The plan goes to stderr with the question; stdout gets the results.
    _show(planned[:_PLAN_ROWS], err=True)
    if len(planned) > _PLAN_ROWS:
        click.echo(f"... and {len(planned) - _PLAN_ROWS} more", err=True)
    _say_before(planned, to_invoke, replay.qualifier)
    invocations = len(to_invoke)
    functions = {_function_name(p.function_arn) for p in planned if p.attempt}
    rate, qualifier = replay.rate, replay.qualifier
    confirm(
        f"Invoke {invocations} failed invocation{'s' if invocations != 1 else ''}"
        f" of {len(functions)} function{'s' if len(functions) != 1 else ''} again"
        f"{f' (qualifier {qualifier})' if qualifier else ''}"
        f"{f' at {rate:g}/s' if rate else ''}?"
    )


async def _invoke(store: Store, replay: _Replay, progress: _Progress) -> list[ReplayResult]:
    """Replay ``progress.to_invoke`` in order, at the command's rate (a skipped row waits for
    nothing), with a progress bar on stderr; each result in ``progress`` as it comes."""
    limiter = RateLimiter(replay.rate)
    rows = progress.to_invoke
    async with AwsClients(replay.settings) as aws:
        lam = await aws.lambda_invoker()
        with click.progressbar(
            length=len(rows), label="replaying", file=sys.stderr, show_pos=True
        ) as bar:
            for row in rows:
                # --force replays once more than the plan showed, not more
                planned = progress.planned_of(row).attempt
                try:
                    result = await replay.one(store, lam, row, limiter=limiter, planned=planned)
                except BaseException:
                    progress.cut = await cut_short(
                        store, progress.planned_of(row), requested_by=replay.requested_by
                    )
                    raise
                progress.done.append(result)
                bar.update(1)
    return progress.done


def _report(
    results: Sequence[ReplayResult], missing: Sequence[str], *, dry_run: bool, as_json: bool
) -> bool:
    """The results on stdout, a one-line tally on stderr; whether the run failed (an error
    or a missing id: exit 1)."""
    counts = {state: sum(1 for r in results if r.state is state) for state in ReplayState}
    if as_json:  # an action's outcome is one object, as `dlq redrive --json`
        click.echo(
            dumps(
                {
                    "results": [r.as_dict() for r in results],
                    **{state.value.replace("-", "_"): n for state, n in counts.items()},
                    "not_found": list(missing),
                }
            )
        )
    elif results:
        _show(results)
    elif not missing:  # as `failures list` says it, before a tally of zeros
        click.echo("no failures match", err=True)
    verb = "would invoke" if dry_run else "invoked"
    done = counts[ReplayState.WOULD_INVOKE] if dry_run else counts[ReplayState.INVOKED]
    click.echo(
        f"{verb} {done} · skipped {counts[ReplayState.SKIPPED]} · errors "
        f"{counts[ReplayState.ERROR]}" + (f" · not found {len(missing)}" if missing else ""),
        err=True,
    )
    return bool(counts[ReplayState.ERROR] or missing)


async def _matches(store: Store, row: InvocationRow, selection: InvocationFilter) -> bool:
    """Whether the filters select ``row`` (found by its key, which they cannot name)."""
    narrowed = dataclasses.replace(selection, request_ids=[row.request_id or ""], limit=None)
    return row.key in {r.key for r in await store.list_invocations(narrowed)}


def _show(results: Sequence[ReplayResult], *, err: bool = False) -> None:
    rows: list[list[Any]] = []
    for r in results:
        note = r.new_request_id if r.state is ReplayState.INVOKED else r.detail
        rows.append(
            [
                r.request_id,
                invoked_label(r.function_arn, r.record_function_arn),
                r.state.value,
                r.attempt if r.state is not ReplayState.SKIPPED else None,
                r.payload_bytes,
                note,
            ]
        )
    click.echo(
        render_table(
            ["REQUEST ID", "FUNCTION", "STATE", "ATTEMPT", "BYTES", "NEW REQUEST ID / WHY"],
            rows,
            flex=(5, 1),
            wrap=True,
            right=(3, 4),
        ),
        err=err,
    )


def _function_name(arn: str | None) -> str:
    try:
        return FunctionArn.parse(arn or "").function_name
    except ValueError:
        return arn or ""  # a name, or a partial ARN, given with --legacy-function
