"""``dlq redrive``: put a dead-letter queue's messages back, or re-invoke their functions.

A module of its own, imported when the command runs (``dlq_group.lazy`` in ``cli/dlq.py``):
moving and re-invoking (``operations.redrive``, the replay and its ledger, the S3 record
reader) are no part of the other `dlq` commands' start-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import click

from lambda_destinations._urls import queue_name
from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._app import EXIT_FAILED, EXIT_USAGE, confirm, fail
from lambda_destinations.cli._common import (
    aws_errors,
    dumps,
    legacy_function_option,
    opened_store,
    operator_identity,
    rate_option,
    subcommand,
)
from lambda_destinations.cli._numbers import LIMIT_MAX, Whole
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import plural, render_table
from lambda_destinations.cli.dlq import dlq_group, say_shows_none
from lambda_destinations.config import Settings
from lambda_destinations.operations.dlq import QueueRef, resolve_queue, source_queues
from lambda_destinations.operations.redrive import (
    DEFAULT_VISIBILITY,
    MoveReport,
    MoveTaskUnsupported,
    ReinvokeReport,
    follow_move_task,
    left_undone,
    move_messages,
    move_task_available,
    object_reader,
    reinvoke_messages,
    start_move_task,
    stopped_after,
    target_chooser,
)
from lambda_destinations.operations.replay import ErrorReason, ReplayState

# SQS's message move task accepts 1..500 messages a second.
_MOVE_TASK_MAX_RATE = 500


@subcommand(dlq_group, "redrive")
@click.argument("queue")
@click.option(
    "--to",
    "to",
    metavar="URL",
    help="Where the messages go (URL, name or ARN). Default: the queue(s) whose redrive "
    "policy names this DLQ.",
)
@rate_option(default=0, help="Messages (or invocations) per second at most; 0: as fast as it goes.")
@click.option("--dry-run", is_flag=True, help="Say what would happen; move or invoke nothing.")
@click.option(
    "--reinvoke",
    is_flag=True,
    help="Instead of moving the messages, invoke the function of each failure record (or "
    "legacy DLQ message) again, then delete it.",
)
@click.option("--force", is_flag=True, help="With --reinvoke: also records replayed already.")
@legacy_function_option("With --reinvoke: the function to invoke for legacy DLQ messages.")
@click.option(
    "--limit",
    type=Whole(min=1, max=LIMIT_MAX),
    help="Handle at most this many messages (no task).",
)
@click.option(
    "--no-move-task",
    is_flag=True,
    help="Move the messages here even where SQS's message move task could.",
)
@click.option("-y", "--yes", is_flag=True, help="With --reinvoke: do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="The outcome as one JSON object.")
@click.option(
    "--visibility-timeout",
    type=Whole(1, 43200),
    default=DEFAULT_VISIBILITY,
    hidden=True,
    help="Seconds a message being moved stays hidden in the DLQ.",
)
@click.option("--concurrency", type=Whole(1, 64), default=4, hidden=True)
@settings_options
def redrive_command(
    settings: Settings, queue: str, reinvoke: bool, as_json: bool, **options: Any
) -> None:
    """Put dead-lettered messages back where they came from, or re-invoke their functions.

    For the DLQ of SQS queues, SQS's own message move task moves the messages where the
    endpoint supports it, and its progress is shown. Otherwise (a Lambda function's or an SNS
    subscription's DLQ, which the move task refuses, or an emulator) the messages are moved
    here: each one is sent to the target with its body and message attributes (the
    LambdaDestinations.* quarantine attributes included) and only then deleted from the DLQ,
    so an interrupted redrive loses nothing: a message is in the DLQ, in the target, or at
    worst in both, and the worker's idempotency absorbs the duplicate. Run it again to finish.

    With --reinvoke, each failure record (or legacy DLQ message) is replayed like `replay`
    does (ledger, status) and deleted once Lambda accepted it; S3's notice of a record is
    replayed as the record its object holds (read with s3:GetObject); anything else stays.

    \b
    Examples:
      lambda-destinations dlq redrive orders-failures-dlq --dry-run
      lambda-destinations dlq redrive orders-failures-dlq
      lambda-destinations dlq redrive orders-api-dlq --to orders-failures --rate 20
      lambda-destinations dlq redrive orders-failures-dlq --reinvoke --yes

    Exit status: 0 when everything was moved (or invoked), also when the DLQ is empty; 1
    when messages stay behind (no target, a send, an invocation or an S3 read failed, or some
    were in flight or delayed, which no receive can take until they show again).
    """
    redrive = _Redrive(settings, queue, **options)  # the other options, typed there
    if reinvoke:
        if redrive.to is not None:
            fail("--reinvoke invokes functions; it has no --to", EXIT_USAGE)
        with aws_errors(settings):
            report = redrive.run_reinvoke(as_json=as_json)
        if redrive.found_none is not None and not as_json:
            say_shows_none(redrive.found_none, "re-invoke")
        elif _report_reinvoke(report, dry_run=redrive.dry_run, as_json=as_json):
            raise SystemExit(EXIT_FAILED)
        if redrive.left_hidden:
            raise SystemExit(EXIT_FAILED)
        return
    if redrive.force or redrive.legacy_function:
        fail("--force and --legacy-function go with --reinvoke", EXIT_USAGE)
    try:
        with aws_errors(settings, stopped=redrive.stopped):
            outcome = asyncio.run(redrive.move())
    except KeyboardInterrupt:
        redrive.say_interrupted()
        raise
    if redrive.found_none is not None and not as_json:  # --json: the report of nothing
        say_shows_none(redrive.found_none, "redrive")
        if redrive.left_hidden:
            raise SystemExit(EXIT_FAILED)
    else:
        _report_redrive(outcome, as_json=as_json)


@dataclasses.dataclass
class _Redrive:
    """One ``dlq redrive``: its options, and how far a move got."""

    settings: Settings
    queue: str
    to: str | None
    rate: float
    dry_run: bool
    force: bool
    legacy_function: str | None
    limit: int | None
    no_move_task: bool
    yes: bool
    visibility_timeout: int
    concurrency: int
    task_handle: str | None = None  # once SQS's move task started
    reinvoked: ReinvokeReport | None = None  # once --reinvoke's invocations began
    moved: int = 0  # messages moved here so far
    # Once moving here began: what it did so far (also when an error stops it), of about
    # ``about`` messages.
    report: MoveReport | None = None
    about: int = 0
    found_none: QueueRef | None = None  # the DLQ, when its counts showed none visible: nothing done

    def expected(self, dlq: QueueRef) -> int:
        """How many messages of ``dlq`` this run handles: about all it shows, at most --limit."""
        return dlq.visible if self.limit is None else min(dlq.visible, self.limit)

    def stopped(self) -> str | None:
        """What the move here had done when an error stopped it, for that error's line; None
        before it began (nothing moved)."""
        return None if self.report is None else stopped_after(self.report, self.about)

    @property
    def left_hidden(self) -> bool:
        """Whether this run found none visible, did nothing, and left some in flight or delayed
        behind (not a dry run's outcome: it only plans)."""
        return self.found_none is not None and not (self.found_none.shows_none or self.dry_run)

    async def move(self) -> dict[str, Any]:
        """Move the messages (or, on a dry run, plan it); the outcome for ``_report_redrive``."""
        async with AwsClients(self.settings) as aws:
            sqs = await aws.client("sqs")
            dlq = await resolve_queue(sqs, self.queue)
            # An empty --to is refused by resolve_queue, as simulate's --queue '' is.
            target = None if self.to is None else await resolve_queue(sqs, self.to)
            if target is not None and target.url == dlq.url:
                fail(
                    f"--to {self.to} is the DLQ being redriven: name the queue its messages "
                    "should go to (leave --to out: the queue whose DLQ it is)",
                    EXIT_USAGE,
                )
            sources = await source_queues(sqs, dlq)
            if target is None and not sources:
                fail(
                    f"{dlq.name} is not the dead-letter queue of any SQS queue (a function's "
                    "or an SNS subscription's DLQ?): name the queue its messages go to with "
                    "--to, or re-invoke the functions with --reinvoke",
                    EXIT_USAGE,
                )
            use_task = bool(sources) and not self.no_move_task and self.limit is None
            plan = {
                "dlq": dlq.url,
                "messages": self.expected(dlq),
                "targets": [target.url] if target else sources,
                "method": "move-task" if use_task else "moved-here",
            }
            if dlq.shows_none_visible:  # no move task started, nothing received: method null
                self.found_none = dlq
                # Those in flight or delayed stay behind, as a run's hidden ones do.
                report = MoveReport(hidden=dlq.in_flight + dlq.delayed)
                done = {**plan, "method": None, **report.as_dict(), "ok": report.ok}
                return {**done, "dry_run": True} if self.dry_run else done
            if self.dry_run:
                if use_task:
                    # Which way it would go: the move task, unless the endpoint has none.
                    async with AwsClients(self.settings, max_attempts=1) as once:
                        available = await move_task_available(await once.client("sqs"), dlq.arn)
                    plan["move_task"] = available
                    if available is False:
                        plan["method"] = "moved-here"
                return {**plan, "dry_run": True}
            if use_task:
                destination = target.arn if target else None
                if destination is None and len(sources) == 1:
                    destination = (await resolve_queue(sqs, sources[0])).arn
                result = await self._by_move_task(sqs, dlq, destination)
                if result is not None:
                    return {**plan, **result}
                plan["method"] = "moved-here"
            sender = await aws.sender("sqs")
            return {**plan, **await self._here(sqs, sender, dlq, target, sources)}

    async def _here(
        self, sqs: Any, sender: Any, dlq: QueueRef, target: QueueRef | None, sources: list[str]
    ) -> dict[str, Any]:
        """Move the messages from this process: send each one, then delete it from the DLQ."""
        targets = [target.url] if target else sources
        self.report, self.about = MoveReport(), self.expected(dlq)
        click.echo(
            f"moving about {plural(self.about, 'message')} from {dlq.name} to "
            f"{', '.join(queue_name(t) for t in targets)}",
            err=True,
        )
        with click.progressbar(
            length=max(self.about, 1), label="moving", file=sys.stderr, show_pos=True
        ) as bar:

            def moved(n: int) -> None:
                self.moved += n
                bar.update(n)

            report = await move_messages(
                sqs,
                dlq.url,
                target_chooser(target.url if target else None, sources),
                rate=self.rate or None,
                concurrency=self.concurrency,
                limit=self.limit,
                visibility=self.visibility_timeout,
                on_moved=moved,
                sender=sender,
                # read with the rest of --to's attributes: no second read
                max_sizes={target.url: target.max_message_size} if target else None,
                report=self.report,
            )
        return {**report.as_dict(), "ok": report.ok and not report.left}

    async def _by_move_task(
        self, sqs: Any, dlq: QueueRef, destination: str | None
    ) -> dict[str, Any] | None:
        """Run SQS's move task to its end; None when the endpoint cannot (move them here)."""
        rate = self.rate
        task_rate = min(_MOVE_TASK_MAX_RATE, max(1, round(rate))) if rate else None
        # A client that does not retry: endpoints without the operation answer 500.
        async with AwsClients(self.settings, max_attempts=1) as once:
            try:
                handle = await start_move_task(
                    await once.client("sqs"), dlq.arn, destination, task_rate
                )
            except MoveTaskUnsupported as exc:
                click.echo(
                    f"SQS's message move task is not available here ({exc}); moving the "
                    "messages here instead",
                    err=True,
                )
                return None
        self.task_handle = handle
        click.echo(f"SQS message move task started: {handle}", err=True)
        with click.progressbar(
            length=max(dlq.visible, 1), label="moving (SQS)", file=sys.stderr, show_pos=True
        ) as bar:

            def progress(moved: int, total: int | None) -> None:
                if total:
                    bar.length = total
                bar.update(moved - bar.pos)

            status = await follow_move_task(sqs, dlq.arn, handle, on_progress=progress)
        moved = int(status.get("ApproximateNumberOfMessagesMoved", 0))
        return {
            "method": "move-task",
            "task_handle": handle,
            "status": status.get("Status"),
            "moved": moved,
            "failure_reason": status.get("FailureReason"),
            "ok": status.get("Status") == "COMPLETED",
        }

    def run_reinvoke(self, *, as_json: bool) -> ReinvokeReport:
        """The re-invocations (:meth:`reinvoke`); when they are cut short (Ctrl-C, the endpoint
        or the store lost midway), what was invoked and what was not, reported before the line
        of what stopped them (and its exit code)."""
        try:
            return asyncio.run(self.reinvoke())
        except BaseException:
            self.report_cut_short(as_json=as_json)
            raise

    def report_cut_short(self, *, as_json: bool) -> None:
        """The report of a re-invoking run stopped midway: each message it received (invoked,
        in doubt, not sent); then one line."""
        report = self.reinvoked
        if report is None or self.dry_run:
            return
        _report_reinvoke(report, dry_run=False, as_json=as_json)
        parts = [f"stopped after invoking {report.invoked}"]
        cut = next((r for mid, r, _ in report.results if mid == report.cut), None)
        if cut is not None and cut.error is ErrorReason.IN_DOUBT:
            parts.append(
                f"message {report.cut} ({cut.request_id or cut.key}) was cut off mid-call and "
                "may have reached Lambda (it stays in the DLQ, and a redrive again skips it: "
                "check `failures show`, then --force if it did not run)"
            )
        parts.append(
            "the messages not invoked stay in the DLQ (the same redrive again invokes them "
            "and deletes those invoked)"
        )
        click.echo("; ".join(parts), err=True)

    async def reinvoke(self) -> ReinvokeReport:
        """Replay each failure record of the DLQ, deleting those Lambda accepted."""
        async with (
            AwsClients(self.settings) as aws,
            opened_store(self.settings, writes=not self.dry_run) as store,
        ):
            sqs = await aws.client("sqs")
            dlq = await resolve_queue(sqs, self.queue)
            if dlq.shows_none_visible:  # nothing to ask about, nor to receive
                self.found_none = dlq
                return ReinvokeReport()
            if not self.dry_run and not self.yes:
                confirm(
                    f"Invoke again the function of each failure record in {dlq.name} (about "
                    f"{plural(self.expected(dlq), 'message')}), then delete it?"
                )
            with click.progressbar(
                length=max(self.expected(dlq), 1),
                label="re-invoking" if not self.dry_run else "reading",
                file=sys.stderr,
                show_pos=True,
            ) as bar:
                self.reinvoked = None if self.dry_run else ReinvokeReport()
                return await reinvoke_messages(
                    sqs,
                    await aws.lambda_invoker(),
                    store,
                    dlq.url,
                    read_object=object_reader(aws),
                    requested_by=operator_identity(),
                    force=self.force,
                    dry_run=self.dry_run,
                    legacy_function=self.legacy_function,
                    rate=self.rate or None,
                    limit=self.limit,
                    visibility=self.visibility_timeout,
                    on_done=bar.update,
                    report=self.reinvoked,
                )

    def say_interrupted(self) -> None:
        """Tell an operator who pressed Ctrl-C where the messages are and what goes on."""
        if self.task_handle:
            click.echo(
                f"the SQS message move task goes on without us; cancel it with `aws sqs "
                f"cancel-message-move-task --task-handle {self.task_handle}`",
                err=True,
            )
        else:
            # the report's count: a batch sent as the interruption came is deleted, and counted
            moved = self.moved if self.report is None else self.report.moved
            click.echo(
                f"interrupted after moving {plural(moved, 'message')}: every message "
                "is in the DLQ or the target (those being moved reappear in the DLQ after the "
                "visibility timeout); run the redrive again to finish",
                err=True,
            )


def _report_redrive(outcome: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(dumps(outcome))
    elif outcome.get("dry_run"):
        how = {
            ("move-task", True): "by SQS's message move task",
            ("move-task", None): "by SQS's message move task (or here, if the endpoint refuses it)",
            ("moved-here", False): "here, sending each one before deleting it (the endpoint "
            "has no SQS message move task)",
        }.get(
            (outcome["method"], outcome.get("move_task")),
            "here, sending each one before deleting it",
        )
        click.echo(
            f"would move about {plural(outcome['messages'], 'message')} from "
            f"{queue_name(outcome['dlq'])} to "
            f"{', '.join(queue_name(t) for t in outcome['targets'])}, {how}"
        )
    elif outcome["method"] == "move-task":
        click.echo(
            f"SQS message move task {outcome['status']}: moved {outcome['moved']}"
            + (f" ({outcome['failure_reason']})" if outcome.get("failure_reason") else "")
        )
    elif not outcome["moved"] and not left_undone(outcome):
        # It showed some, and its receives found none (another consumer took them): not "moved 0".
        click.echo(f"received no message from {queue_name(outcome['dlq'])}: nothing moved")
    else:
        parts = [f"moved {outcome['moved']}"]
        parts += [f"{n} to {queue_name(t)}" for t, n in outcome["by_target"].items()]
        parts += left_undone(outcome)
        click.echo(" · ".join(parts))
    if not outcome.get("dry_run") and not outcome.get("ok", True):
        raise SystemExit(EXIT_FAILED)


def _report_reinvoke(report: ReinvokeReport, *, dry_run: bool, as_json: bool) -> bool:
    """The results on stdout, a one-line tally on stderr; whether the run failed (an error:
    exit 1)."""
    if as_json:
        click.echo(dumps(report.as_dict()))
    else:
        _show_reinvoke(report)
        stayed = len(report.results) - report.deleted
        verb = "would invoke" if dry_run else "invoked"
        done = report.would_invoke if dry_run else report.invoked
        unread = f" · unread in S3 {report.unread}" if report.unread else ""
        click.echo(
            f"{verb} {done} · deleted {report.deleted} · left in the DLQ {stayed} · errors "
            f"{report.errors}{unread}",
            err=True,
        )
    return bool(report.errors or report.unread)


def _show_reinvoke(report: ReinvokeReport) -> None:
    rows: Sequence[list[Any]] = [
        [
            message_id,
            result.request_id if result else None,
            result.function_arn if result else None,
            result.state.value if result else ReplayState.SKIPPED.value,  # as --json says
            (result.new_request_id or result.detail) if result else why,
        ]
        for message_id, result, why in report.results
    ]
    if rows:
        click.echo(
            render_table(
                ["MESSAGE ID", "REQUEST ID", "FUNCTION", "STATE", "NEW REQUEST ID / WHY"],
                rows,
                flex=(2, 4),
                wrap=True,
            )
        )
