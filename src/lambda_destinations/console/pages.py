"""What people read: overview, failures (list, groups, one failure), bulk plans, DLQs,
quarantine, jobs, and the sign-in page. GET only; actions are in ``actions.py``."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any
from urllib.parse import quote

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError
from multidict import MultiDict

from lambda_destinations._request_ids import stored_id
from lambda_destinations.console import views
from lambda_destinations.console.app import CONSOLE, Console, json_text
from lambda_destinations.console.bound import AwsUnanswered, aws_bound
from lambda_destinations.console.charts import hourly_bars
from lambda_destinations.console.security import (
    LINK_REFUSED,
    PEEK_PARAM,
    Refused,
    one_time_token,
    safe_next,
    same_origin,
    take_link,
)
from lambda_destinations.operations import TRIGGER_MANUAL, original_payload
from lambda_destinations.operations.detail import (
    AmbiguousId,
    carried_batch,
    failure_detail,
    stream_read_command,
    whole_id,
)
from lambda_destinations.operations.dlq import describe_message, peek, source_queues
from lambda_destinations.operations.function_logs import (
    Controls,
    FunctionLogs,
    LogGroupNotFound,
    LogsNotRead,
    LogsRefused,
    function_logs,
    log_notes,
    log_text,
    logs_query,
    with_its_function,
)
from lambda_destinations.operations.quarantine import pretty_body, resend_status
from lambda_destinations.operations.replay import (
    ReplayResult,
    ReplayState,
    replay_invocation,
    version_hints,
)
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import CONNECTION_ERRORS
from lambda_destinations.store import FailureStatus, InvocationRow, utcnow

routes = web.RouteTableDef()
_PLAN_ROWS = 200  # rows of a bulk plan listed one by one
_PEEK_MAX = 50
# The replay forms' field, as a line telling to fill it names it (its label).
QUALIFIER_FIELD = "Qualifier"


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    console = _console(request)
    everything = views.selection_from(MultiDict())
    stats, counts = await views.grouped(
        console.store, everything.filter, views.stats_window(everything)
    )
    queues, sqs_problem = await _queue_depths(console)
    groups = views.groups_of(counts, stats, limit=10)
    # None in the window: the newest failure before it (a backlog drained at a first start
    # holds records days old), one row of one index, so the page does not read as empty.
    newest = (
        []
        if groups
        else await console.store.list_invocations(dataclasses.replace(everything.filter, limit=1))
    )
    return console.render(
        request,
        "overview.html",
        chart=hourly_bars(stats.hourly),
        stats=stats,
        groups=groups,
        newest=newest[0] if newest else None,
        statuses=await views.status_counts(console.store),
        queues=queues,
        sqs_problem=sqs_problem,
        store=getattr(console.store, "display_url", "the store"),
        views=views,
    )


async def _queue_depths(console: Console) -> tuple[list[views.QueueDepth], str | None]:
    """The configured queues' depths, or why SQS cannot say (one line for that section: the
    rest of the page needs only the store). No queue configured asks SQS nothing."""
    if not console.settings.queues:
        return [], None
    try:
        async with aws_bound():
            sqs = await console.aws.client("sqs")
            return await views.queue_depths(sqs, console.settings), None
    except (BotoCoreError, ClientError) as exc:  # no region, say: made before any request
        return [], views.problem_line(exc, console.settings)
    except AwsUnanswered as exc:
        return [], exc.line


@routes.get("/failures")
async def failures(request: web.Request) -> web.Response:
    console = _console(request)
    selection = views.selection_from(request.query)
    cursor = views.page_cursor(selection, request.query.get("after", ""))
    page, status = views.Page([], {}, None), 400
    if not selection.errors:
        page, status = await views.failures_page(console.store, selection.filter, cursor), 200
    return console.render(
        request,
        "failures.html",
        status=status,
        selection=selection,
        page=page,
        first_page=not request.query.get("after"),
        statuses=[s.value for s in FailureStatus],
        views=views,
    )


@routes.get("/groups")
async def groups(request: web.Request) -> web.Response:
    console = _console(request)
    selection = views.selection_from(request.query)
    stats, found, status = None, [], 400
    if not selection.errors:  # a filter with errors counts nothing
        try:
            window = views.stats_window(selection)
        except ValueError as exc:  # no statistics for this window: the form, and why
            selection.errors.append(str(exc))
        else:
            stats, counts = await views.grouped(console.store, selection.filter, window)
            found, status = views.groups_of(counts, stats, limit=views.GROUPS_SHOWN), 200
    return console.render(
        request,
        "groups.html",
        status=status,
        selection=selection,
        stats=stats,
        groups=found,
        more=len(stats.groups) - len(found) if stats else 0,
        statuses=[s.value for s in FailureStatus],
        views=views,
    )


async def _invocation(console: Console, ident: str) -> InvocationRow:
    """The record of a request id, its first 4 characters or more, or a key; 404 otherwise."""
    try:
        row = await console.store.get_invocation(await whole_id(console.store, stored_id(ident)))
    except AmbiguousId as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    if row is None:
        raise web.HTTPNotFound(text=f"no record with request id or key {echoed(ident)!r}\n")
    return row


@routes.get("/find")
async def find(request: web.Request) -> web.Response:
    """The failures page's "Open a request id" box: that record's page (or why there is none)."""
    ident = request.query.get("id", "").strip()
    raise web.HTTPSeeOther(f"/failures/{quote(ident, safe='')}" if ident else "/failures")


@routes.get("/failures/{ident}")
async def failure(request: web.Request) -> web.Response:
    console = _console(request)
    row = await _invocation(console, request.match_info["ident"])
    whole = await _whole(console, row)
    # A replay comes back here naming its ledger entry: its outcome, above the tables.
    notice = views.replay_notice(whole["actions"], request.query.get("replayed", ""), row)
    hints = await failure_hints(console, row)
    return console.render(request, "failure.html", notice=notice, hints=hints, **whole)


async def failure_hints(console: Console, row: InvocationRow) -> list[str]:
    """``replay``'s line when ``row`` names a published version, which its replays (an edit's
    too, which replays again what was replayed) would run again; none when it does not."""
    return version_hints([await _planned(console, row, force=True)], choose=QUALIFIER_FIELD)


async def _planned(
    console: Console, row: InvocationRow, *, qualifier: str | None = None, force: bool = False
) -> ReplayResult:
    """What a replay of ``row`` would invoke (a dry run: nothing is written or invoked)."""
    return await replay_invocation(
        console.store,
        None,
        row,
        trigger=TRIGGER_MANUAL,
        requested_by="console",
        force=force,
        dry_run=True,
        qualifier=qualifier,
    )


@routes.get("/failures/{ident}/record.json")
async def record_json(request: web.Request) -> web.Response:
    """The record whole, as the worker stored it: its page cuts a payload past a size."""
    row = await _invocation(_console(request), request.match_info["ident"])
    return web.Response(text=json_text(row.record), content_type="application/json")


async def _whole(console: Console, row: InvocationRow) -> dict[str, Any]:
    """What ``failures show`` prints of ``row``, and its operator actions."""
    store = console.store
    detail = await failure_detail(store, row)
    return {
        "row": row,
        # The first ones: a record redelivered thousands of times makes no page of megabytes.
        "deliveries": detail.deliveries[: views.DELIVERIES_SHOWN],
        "delivery_count": len(detail.deliveries),
        "runs": detail.runs,
        "replays": detail.replays,
        "invoked_elsewhere": detail.invoked_elsewhere,
        # The replays' own records that the store holds: their request ids link to them.
        "stored": await views.stored_request_ids(
            store, [a.new_request_id for a in detail.replays if a.new_request_id]
        ),
        "others": detail.others,
        # A replay's own failure record names the failure it replays, as `failures show` does.
        "replay_of": detail.replay_of,
        # A stream failure's batch, where its record carries it (an S3 destination's).
        "batch": carried_batch(row),
        # Where it carries none, the command that reads it from its Kinesis or DynamoDB stream.
        "stream_read": stream_read_command(row.record),
        "actions": await store.actions(row.key),
        "views": views,
    }


# The status of a page whose lines were not read, by why.
_NOT_READ = {LogGroupNotFound: 404, LogsRefused: 403}


@routes.get("/failures/{ident}/logs")
async def logs(request: web.Request) -> web.Response:
    """The function's own log lines of one failure: its last attempt's (``?all_attempts=1``:
    every attempt's), read from CloudWatch Logs as ``failures logs`` reads them. Its own page:
    the failure's page stays fast, and asks CloudWatch nothing."""
    console = _console(request)
    row = await _invocation(console, request.match_info["ident"])
    every = _all_attempts(request.query.get("all_attempts", ""))
    controls = views.logs_controls(row, all_attempts=every)
    command = views.logs_command(row, all_attempts=every)
    found, problem, status = await _read_logs(console, row, controls, command, all_attempts=every)
    notes = []
    if found is not None:
        notes = log_notes(row, found, controls, widened=every, now=utcnow())
    return console.render(
        request,
        "logs.html",
        status=status,
        row=row,
        all_attempts=every,
        found=found,
        text=log_text(found.lines) if found else "",
        notes=notes,
        problem=problem,
        command=command,
        views=views,
    )


def _all_attempts(text: str) -> bool:
    if text not in ("", "1"):
        raise web.HTTPBadRequest(text="all_attempts: 1 for every attempt, or nothing\n")
    return text == "1"


async def _read_logs(
    console: Console, row: InvocationRow, controls: Controls, command: str, *, all_attempts: bool
) -> tuple[FunctionLogs | None, str | None, int]:
    """The lines, or why they were not read, in one line; and the page's status. ``command``:
    the one that prints them, which waits longer."""
    try:
        named = await with_its_function(console.store, row)  # a DLQ message's: its record's
        query = logs_query(named, controls, all_attempts=all_attempts)
        # Its calls together (GetFunctionConfiguration, each FilterLogEvents) in one bound.
        async with aws_bound(command):
            return await function_logs(console.aws, query, controls), None, 200
    except AwsUnanswered as exc:
        return None, exc.line, exc.status
    except LogsNotRead as exc:
        return None, str(exc), _NOT_READ.get(type(exc), 404)
    except CONNECTION_ERRORS as exc:
        return None, views.problem_line(exc, console.settings), 503


@routes.get("/failures/{ident}/edit")
async def edit(request: web.Request) -> web.Response:
    console = _console(request)
    row = await _invocation(console, request.match_info["ident"])
    if row.succeeded:  # its replay would be refused (404): no form to fill in for nothing
        raise web.HTTPNotFound(text=f"{views.SUCCEEDED}: there is nothing to replay\n")
    return console.render(
        request,
        "edit.html",
        row=row,
        payload=views.pretty_json(row.request_payload),
        qualifier="",
        hints=await failure_hints(console, row),
        nonce=one_time_token(),
        problem=None,
        problem_field="payload",
        views=views,
    )


@routes.get("/bulk")
async def bulk(request: web.Request) -> web.Response:
    """The plan: how many failures the filter selects and exactly what would be invoked."""
    console = _console(request)
    action = "ignore" if request.query.get("action") == "ignore" else "replay"
    selection = views.selection_from(request.query)
    frozen = selection.filter
    if frozen.statuses is None:
        frozen.statuses = [FailureStatus.OPEN, FailureStatus.REPLAYED]
    frozen.until = frozen.until or utcnow()  # later failures are not part of this plan
    qualifier = None
    try:
        qualifier = views.qualifier_of(request.query)
    except ValueError as exc:
        selection.errors.append(f"qualifier: {exc}")
    total, status = 0, 400
    rows: list[InvocationRow] = []
    if not selection.errors:  # a filter with errors plans nothing (and offers no form)
        total = await console.store.count_invocations(frozen)
        # The first the job takes: it takes them oldest first, as `replay` invokes them.
        first = dataclasses.replace(frozen, limit=_PLAN_ROWS, oldest_first=True)
        rows = await console.store.list_invocations(first)
        status = 200
    plan = [(row, await _planned(console, row, qualifier=qualifier)) for row in rows]
    return console.render(
        request,
        "bulk.html",
        status=status,
        action=action,
        selection=selection,
        # Both ends as times, never as "1h" (ago, read again when the form is posted).
        since=frozen.since.isoformat() if frozen.since else "",
        until=frozen.until.isoformat(),
        nonce=one_time_token(),
        total=total,
        plan=plan,
        would=sum(1 for _, r in plan if r.state is ReplayState.WOULD_INVOKE),
        qualifier=qualifier or "",
        # Carried over when a qualifier typed in the form brought the plan back with it.
        rate=request.query.get("rate", "") or "10",
        reason=request.query.get("reason", ""),
        hints=[] if qualifier else version_hints([r for _, r in plan], choose=QUALIFIER_FIELD),
        payload_of=_payload_text,
        views=views,
    )


def _payload_text(row: InvocationRow) -> str:
    try:
        return original_payload(row).decode(errors="replace")
    except (TypeError, ValueError):
        return ""


@routes.get("/dlqs")
async def dlqs(request: web.Request) -> web.Response:
    console = _console(request)
    queues, sqs_problem = await _queue_depths(console)
    return console.render(request, "dlqs.html", queues=queues, sqs_problem=sqs_problem, views=views)


async def configured_dlq(console: Console, name: str) -> tuple[Any, list[str]]:
    """The DLQ called ``name`` of a configured queue, and its source queues; 404 otherwise.

    Only the DLQs of the queues the settings name can be acted on from the console."""
    sqs = await console.aws.client("sqs")
    depths = await views.queue_depths(sqs, console.settings)
    for depth in depths:
        if depth.dlq is not None and depth.dlq.name == name:
            return depth.dlq, await source_queues(sqs, depth.dlq)
    unread = next((depth for depth in depths if depth.problem), None)
    if unread is not None:  # not known to be no DLQ of ours: SQS did not say
        raise web.HTTPServiceUnavailable(
            text=f"the configured queue {unread.name} could not be read ({unread.problem}), so "
            f"whether {echoed(name)!r} is its DLQ is not known: try again once SQS answers "
            "(the overview shows what each queue answers)\n"
        )
    raise web.HTTPNotFound(text=f"{echoed(name)!r} is not the DLQ of a configured queue\n")


@routes.get("/dlqs/{name}")
async def dlq(request: web.Request) -> web.Response:
    console = _console(request)
    name = request.match_info["name"]
    peeked = None
    limit = _peek_count(request.query.get(PEEK_PARAM, ""))
    if limit and console.options.read_only:
        # A peek receives (each message's receive count goes up, toward a redrive limit of the
        # DLQ's own): a read-only console changes nothing in AWS, so it offers none either.
        raise Refused(
            "the console runs read-only (--read-only), and a peek adds one to each message's "
            f"receive count: `lambda-destinations dlq peek {shlex.quote(name)}` peeks from a shell"
        )
    if limit and not same_origin(request, console.sessions.public):
        # A peek receives the messages (their receive counts go up; a DLQ with a redrive
        # policy of its own moves them on): no other site's link or image may make one.
        raise Refused(
            "the peek's link comes from another site (a peek adds one to each message's "
            "receive count): open the DLQ's page here and use Peek"
        )
    # The page alone (depth, sources) has no command of its own: `dlq peek` receives.
    command = f"lambda-destinations dlq peek {shlex.quote(name)} --limit {limit}"
    async with aws_bound(command if limit else None):
        ref, sources = await configured_dlq(console, name)
        if limit:
            sqs = await console.aws.client("sqs")
            now = utcnow()
            peeked = [(describe_message(m, now), m) for m in await peek(sqs, ref.url, limit)]
    return console.render(
        request,
        "dlq.html",
        dlq=ref,
        sources=sources,
        peeked=peeked,
        actions=await console.store.actions(ref.url, limit=20),
        views=views,
    )


def _peek_count(text: str) -> int:
    """``?peek=N``: how many messages to look at (1 to 50), 0 for none; 400 if no number."""
    if not text:
        return 0
    # "²" is a digit to str.isdigit, not to int(); nor are 5000 digits
    if not (text.isascii() and text.isdigit() and len(text) < 10):
        raise web.HTTPBadRequest(text=f"peek: a number of messages from 1 to {_PEEK_MAX}\n")
    return max(1, min(_PEEK_MAX, int(text)))


@routes.get("/quarantine")
async def quarantine(request: web.Request) -> web.Response:
    console = _console(request)
    after = request.query.get("after", "")
    try:
        cursor = views.decode_quarantine_cursor(after) if after else None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    rows, next_cursor = await views.quarantine_page(console.store, cursor)
    now = utcnow()
    return console.render(
        request,
        "quarantine.html",
        rows=rows,
        after=after,
        next_cursor=next_cursor,
        page_size=views.QUARANTINE_PAGE_SIZE,
        resending={q.id: resend_status(q, now) for q in rows},
        pretty_body=pretty_body,
        views=views,
    )


@routes.get("/jobs")
async def jobs(request: web.Request) -> web.Response:
    console = _console(request)
    return console.render(request, "jobs.html", jobs=console.jobs.recent(), views=views)


@routes.get("/jobs/{job_id}")
async def job(request: web.Request) -> web.Response:
    console = _console(request)
    found = console.jobs.get(request.match_info["job_id"])
    if found is None:
        raise web.HTTPNotFound(text="no such job (jobs are kept while the console runs)\n")
    return console.render(request, "job.html", job=found, views=views)


@routes.get("/login")
async def login(request: web.Request) -> web.Response:
    console = _console(request)
    target = safe_next(request.query.get("next"))
    if "token" in request.query:  # the sign-in link: its token never goes into a page
        raise take_link(console.sessions, request.query["token"], target)
    refused = request.query.get("link") == "refused"
    return console.render(
        request,
        "login.html",
        linked=console.sessions.link_of(request) is not None,
        next=target,
        problem=LINK_REFUSED if refused else None,
        problem_field="token",
        views=views,
    )
