"""What people do: sign in and out, replay (also with an edited payload), ignore and reopen,
bulk replay or ignore, redrive and purge a DLQ. POST only; each one checks the token, the
origin and the form's CSRF token (``Console.actor``), and goes into the store's ledgers. A form
that acts on a failure or a quarantined message, or runs a bulk plan, carries a one-time token:
posted again, it does nothing and answers as its first post did (``once``)."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

from aiohttp import web
from botocore.exceptions import ClientError
from multidict import MultiDict

from lambda_destinations._json import strict_loads
from lambda_destinations._request_ids import stored_id
from lambda_destinations.console import views
from lambda_destinations.console.app import CONSOLE, LOGIN_FORM_BYTES, Console, read_form
from lambda_destinations.console.bound import aws_bound
from lambda_destinations.console.jobs import Job, JobRunning, JobStopped
from lambda_destinations.console.pages import configured_dlq, failure_hints
from lambda_destinations.console.security import (
    LINK_COOKIE,
    SESSION_COOKIE,
    Refused,
    clean_user,
    name_problem,
    one_time_token,
    safe_next,
    same_origin,
)
from lambda_destinations.operations import TRIGGER_MANUAL, RateLimiter
from lambda_destinations.operations.dlq import PurgedRecently, nothing_to_purge
from lambda_destinations.operations.dlq import purge as purge_queue
from lambda_destinations.operations.quarantine import RESEND_CLAIM, NotResent, refusal, resend
from lambda_destinations.operations.redrive import (
    MoveReport,
    left_undone,
    move_messages,
    stopped_after,
    target_chooser,
)
from lambda_destinations.operations.replay import IN_DOUBT as REPLAY_DOUBT
from lambda_destinations.operations.replay import ReplayResult, replay_invocation
from lambda_destinations.operations.status import reopen as reopen_failures
from lambda_destinations.operations.status import replayed_original, set_by
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import refused_setup
from lambda_destinations.store import (
    ROW_ID_MAX,
    FailureStatus,
    InvocationRow,
    OperatorAction,
    QuarantineRow,
    Store,
)

routes = web.RouteTableDef()
_PAGE = 200  # rows a bulk job reads at a time
_REASON_MAX = 1000
NONCE_FIELD = "nonce"  # a form's one-time token: its action is done once, however often posted
# The bulk replay's rates, invocations a second, as bulk.html's rate field offers them.
BULK_RATES = (0.1, 100.0)


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


def _failure_url(row: InvocationRow) -> str:
    return f"/failures/{quote(row.key, safe='')}"


# -- signing in -------------------------------------------------------------------------------


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    console = _console(request)
    if not same_origin(request, console.sessions.public):
        raise Refused("the request comes from another site")
    form = await read_form(request, LOGIN_FORM_BYTES)
    token, name = form.get("token", ""), form.get("user", "")
    target = safe_next(form.get("next", ""))
    user = clean_user(name)
    # The sign-in link's token, taken in by GET /login, stands in for a typed one.
    link = console.sessions.link_of(request)
    problem, field = None, "token"  # field: the one the problem is about, for screen readers
    if link is None and not console.sessions.token_matches(token):
        problem = "That is not the console's token (it is printed when the console starts)."
    elif user is None:
        problem, field = name_problem(name), "user"
    if problem is not None:
        return console.render(
            request,
            "login.html",
            status=403,
            linked=link is not None,
            next=target,
            problem=problem,
            problem_field=field,
            views=views,
        )
    assert user is not None
    session_id, _ = console.sessions.open(user)
    response = web.HTTPSeeOther(target)
    public = console.sessions.public
    public.set_cookie(
        response, SESSION_COOKIE, session_id, httponly=True, samesite="Strict", path="/"
    )
    if link is not None:  # used once
        console.sessions.forget_link(link)
        public.del_cookie(response, LINK_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    console = _console(request)
    await console.signed_in(request)  # read-only too: signing out changes no record
    console.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/")
    console.sessions.public.del_cookie(response, SESSION_COOKIE, path="/")
    raise response


# -- one failure ------------------------------------------------------------------------------


async def _row(console: Console, request: web.Request) -> InvocationRow:
    row = await console.store.get_invocation(stored_id(request.match_info["ident"]))
    if row is None or row.succeeded is True:
        raise web.HTTPNotFound(text="no failure with that request id or key\n")
    return row


async def _replay(
    console: Console,
    row: InvocationRow,
    actor: str,
    *,
    payload: bytes | None = None,
    qualifier: str | None = None,
    limiter: RateLimiter | None = None,
) -> ReplayResult:
    lam = await console.aws.lambda_invoker()
    return await replay_invocation(
        console.store,
        lam,
        row,
        trigger=TRIGGER_MANUAL,
        requested_by=actor,
        force=payload is not None,  # an edited replay is a new, deliberate attempt
        payload=payload,
        qualifier=qualifier,
        limiter=limiter,
        credentials=views.CONSOLE_CREDENTIALS,  # its refusal's fix names the console's keys
    )


# A replay whose Invoke was cut off at the bound: the ledger keeps its attempt in doubt.
REPLAY_IN_DOUBT = (
    f"the replay is {REPLAY_DOUBT}: the failure's page lists its attempt under Replays, and the "
    "function's log lines say whether it ran"
)


def _qualifier(form: Mapping[str, str]) -> str | None:
    """The form's qualifier (None: each record's own); a 400 with the command's line for one
    in no form Lambda takes, before anything is invoked."""
    try:
        return views.qualifier_of(form)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"qualifier: {exc}; nothing was invoked\n") from None


@routes.post("/failures/{ident}/replay")
async def replay(request: web.Request) -> web.Response:
    console = _console(request)
    actor, form = await console.actor(request)
    row = await _row(console, request)
    qualifier = _qualifier(form)
    # Kept before it is done, with the form's one-time token, as an edit's replay is.
    detail = {"result": "interrupted"}
    kept = OperatorAction(actor, "replay", row.key, _reason(form), detail, _nonce(request, form))
    async with console.once.keep(console.store, kept) as first:
        if first is None:
            async with aws_bound() as wait:
                wait.in_doubt = REPLAY_IN_DOUBT
                result = await _replay(console, row, actor, qualifier=qualifier)
            await console.store.set_action_detail(_id(kept), {"result": result.as_dict()})
    # The page says what became of it (skipped, and why, too) from this ledger entry; the same
    # form posted again (a double click) says what its first post did.
    raise web.HTTPSeeOther(_outcome_url(row, first or kept))


@routes.post("/failures/{ident}/edit")
async def edit_and_replay(request: web.Request) -> web.Response:
    """Replay with the payload the form holds; it must be JSON, and the ledger keeps it.

    An edited replay is forced (a new, deliberate attempt), so the form's one-time token is
    what keeps the same form, posted again (Back, then submit), from invoking again."""
    console = _console(request)
    actor, form = await console.actor(request)
    row = await _row(console, request)
    text = form.get("payload", "")
    field = "payload"  # the field a problem is about, for screen readers
    try:
        edited = strict_loads(text)
        field = "qualifier"
        qualifier = views.qualifier_of(form)
    except ValueError as exc:
        what = "The payload is not valid JSON:" if field == "payload" else "The qualifier"
        return console.render(
            request,
            "edit.html",
            status=400,
            row=row,
            payload=text,
            qualifier=form.get("qualifier", ""),
            hints=await failure_hints(console, row),
            # Nothing was done with the form's token: the corrected form may use it.
            nonce=form.get(NONCE_FIELD) or one_time_token(),
            problem=f"{what} {exc}. Nothing was invoked.",
            problem_field=field,
            views=views,
        )
    payload = json.dumps(edited, ensure_ascii=False, separators=(",", ":")).encode()
    # Kept before it is done, with the form's token, which the store keeps once: the same form
    # posted again, here or to another console process, finds it kept and invokes nothing.
    detail = {"payload": edited, "original_payload": row.request_payload, "result": "interrupted"}
    nonce = _nonce(request, form)
    edit = OperatorAction(actor, "edit-replay", row.key, _reason(form), detail, nonce)
    async with console.once.keep(console.store, edit) as first:
        if first is None:
            async with aws_bound() as wait:
                wait.in_doubt = REPLAY_IN_DOUBT
                result = await _replay(console, row, actor, payload=payload, qualifier=qualifier)
            await console.store.set_action_detail(_id(edit), {**detail, "result": result.as_dict()})
    # The page says what became of it, as after Replay, from this ledger entry.
    raise web.HTTPSeeOther(_outcome_url(row, first or edit))


def _id(kept: OperatorAction) -> int:
    assert kept.id is not None, "the store sets it"
    return kept.id


def _outcome_url(row: InvocationRow, replay: OperatorAction) -> str:
    """The failure's page saying what became of the replay whose ledger entry is ``replay``."""
    return f"{_failure_url(row)}?replayed={replay.id}#outcome"


def _nonce(request: web.Request, form: Mapping[str, str]) -> str | None:
    """The form's one-time token: the pages put one in each form that acts, so that a form
    posted again acts once. A script with the console's bearer token may send none (each post
    then acts) or one of its own."""
    nonce = form.get(NONCE_FIELD, "")
    if not nonce and _console(request).sessions.bearer(request):
        return None
    if not nonce or len(nonce) > 64:
        raise web.HTTPBadRequest(text="the form has no one-time token: reload the page\n")
    return nonce


def _reason(form: Mapping[str, str], *, required: bool = False) -> str | None:
    reason = " ".join(form.get("reason", "").split())[:_REASON_MAX]
    if required and not reason:
        raise web.HTTPBadRequest(text="give a reason: the ledger keeps it\n")
    return reason or None


async def _set_status(request: web.Request, status: FailureStatus, action: str) -> web.Response:
    console = _console(request)
    actor, form = await console.actor(request)
    row = await _row(console, request)
    if row.status is FailureStatus.REPLAY:  # as `failures ignore` and `reopen` leave it
        raise web.HTTPConflict(text=await _replays_own(console.store, row, action))
    reason = _reason(form, required=True)
    by = set_by(actor, reason)  # as `failures ignore --reason` keeps it, for `failures show`
    kept = OperatorAction(actor, action, row.key, reason, nonce=_nonce(request, form))
    async with console.once.keep(console.store, kept) as first:
        if first is None:  # else the same form posted again: done once, one ledger entry
            if status is FailureStatus.OPEN:  # recovered where a replay recovered, as the CLI's
                await reopen_failures(console.store, [row.key], by=by)
            else:
                await console.store.set_status([row.key], status, by=by)
    # To the status: the browser moves focus there, and a screen reader reads the new one.
    raise web.HTTPSeeOther(_failure_url(row) + "#status-line")


async def _replays_own(store: Store, row: InvocationRow, action: str) -> str:
    """Why a replay's own record is neither ignored nor reopened: its status follows its
    original's (ignored, then reopened, it would be an open failure of its own, counted twice
    and replayed by a bulk replay); the original's page is the one to act on."""
    replayed = await replayed_original(store, row)
    if replayed is None:
        return f"{SAME_STATUS}: {action} its original failure instead (Replay of names it)\n"
    attempt, original = replayed
    page = f"/failures/{quote(attempt.original_key, safe='')}"
    return (
        f"{SAME_STATUS} (attempt {attempt.attempt} of {echoed(original)}): {action} the "
        f"original instead, on its page {page}\n"
    )


# Why a replay's own record keeps its status (a bulk ignore's step says it too).
SAME_STATUS = "this is a replay's own record: its status follows the original failure's"


@routes.post("/failures/{ident}/ignore")
async def ignore(request: web.Request) -> web.Response:
    return await _set_status(request, FailureStatus.IGNORED, "ignore")


@routes.post("/failures/{ident}/reopen")
async def reopen(request: web.Request) -> web.Response:
    return await _set_status(request, FailureStatus.OPEN, "reopen")


# -- bulk -------------------------------------------------------------------------------------


@routes.post("/bulk")
async def bulk(request: web.Request) -> web.Response:
    """Run the plan the bulk page showed: the same filter, its ``since`` and ``until`` frozen
    as times by the page; refused (409) when it no longer selects as many failures."""
    console = _console(request)
    actor, form = await console.actor(request)
    action = "ignore" if form.get("action") == "ignore" else "replay"
    selection = views.selection_from(form)
    if selection.errors or "until" not in form:
        raise web.HTTPBadRequest(text="; ".join(selection.errors) or "the plan has no end time\n")
    chosen = selection.filter
    chosen.statuses = chosen.statuses or [FailureStatus.OPEN, FailureStatus.REPLAYED]
    reason = _reason(form, required=action == "ignore")
    rate = _rate(form)
    qualifier = _bulk_qualifier(form, selection) if action == "replay" else None
    target = f"failures?{selection.query()}"
    plan = {"selected": form.get("selected"), "rate": rate, "until": form["until"]}
    if qualifier is not None:
        plan["qualifier"] = qualifier
    kept = OperatorAction(actor, f"bulk-{action}", target, reason, plan, _nonce(request, form))
    store = console.store
    recorded = await (store.add_action_once(kept) if kept.nonce else store.add_action(kept))
    if recorded is None:  # the same plan posted again: its job runs (or ran) already
        raise web.HTTPSeeOther("/jobs")
    total = await console.store.count_invocations(chosen)
    if form.get("selected", str(total)) != str(total):
        await console.store.set_action_detail(recorded, {**plan, "refused": f"selects {total}"})
        raise web.HTTPConflict(
            text=f"the plan counted {echoed(form['selected'])} failures; its filter selects "
            f"{total} now (others acted on them meanwhile): open the plan again\n"
        )
    await console.store.set_action_detail(recorded, {**plan, "selected": total})

    async def work(job: Job) -> None:
        # The rate paces invocations: a failure skipped (replayed already) waits for nothing.
        limiter = RateLimiter(rate)
        # A keyset page at a time (statuses change as the job goes on), oldest first, as
        # `replay` invokes them: a function's effects come in the order its invocations failed.
        oldest_first = dataclasses.replace(chosen, oldest_first=True)
        async for rows in console.store.invocation_pages(oldest_first, page=_PAGE):
            for row in rows:
                if action == "replay":
                    result = await _replay(
                        console, row, actor, qualifier=qualifier, limiter=limiter
                    )
                    # An error's text is kept for its kind's first (the skips' are worded
                    # for the command line: the failure's page words each one).
                    first = result.detail if result.error else None
                    job.step(result.state.value, reason=result.skip or result.error, detail=first)
                elif row.status is FailureStatus.REPLAY:  # a filter of status replay
                    job.step("skipped", reason=SAME_STATUS)
                else:
                    by = set_by(actor, reason)
                    await console.store.set_status([row.key], FailureStatus.IGNORED, by=by)
                    await console.store.add_action(OperatorAction(actor, "ignore", row.key, reason))
                    job.step("ignored")

    shown = (selection.described() or "all") + (f"; qualifier {qualifier}" if qualifier else "")
    title = f"{action} {total} failure{'s' if total != 1 else ''} ({shown})"
    job = console.jobs.start(f"bulk-{action}", title, actor, total, work)
    raise web.HTTPSeeOther(f"/jobs/{job.id}")


def _bulk_qualifier(form: Mapping[str, str], selection: views.Selection) -> str | None:
    """A bulk replay's qualifier (None: each record's own), once its plan showed it. One the
    plan did not show (typed, or changed, on its page) opens the plan again with it first (the
    filter as typed, ``plan``), as `replay` shows the function each record invokes before it
    asks; the rate and reason typed are kept."""
    qualifier = _qualifier(form)
    if qualifier != (form.get("planned_qualifier") or None):
        if "plan" in form:
            selection = views.selection_from(MultiDict(parse_qsl(form["plan"])))
        kept = {"rate": form.get("rate", ""), "reason": form.get("reason", "")}
        query = selection.query(action="replay", qualifier=qualifier or "", **kept)
        raise web.HTTPSeeOther(f"/bulk?{query}")
    return qualifier


def _rate(form: Mapping[str, str]) -> float:
    """A bulk replay's rate, invocations a second; a 400 for one the form does not offer."""
    try:
        rate = float(form.get("rate", "10") or 10)
    except ValueError:
        rate = math.nan
    # What the form offers; a rate of 0 or below would mean no limit at all (NaN fails too).
    if not BULK_RATES[0] <= rate <= BULK_RATES[1]:
        raise web.HTTPBadRequest(
            text=f"rate: {BULK_RATES[0]} to {BULK_RATES[1]:.0f} invocations a second\n"
        )
    return rate


# -- DLQs -------------------------------------------------------------------------------------


@routes.post("/dlqs/{name}/redrive")
async def redrive(request: web.Request) -> web.Response:
    """Move the DLQ's messages back to the queue(s) whose redrive policy names it.

    One redrive of a DLQ at a time: a second one started while the first runs would move
    again what the first moved and the worker sent back meanwhile (the first leaves those
    alone by its run id; the second has another id), so it is refused (409), naming the
    running job; so is a purge."""
    console = _console(request)
    actor, form = await console.actor(request)
    name = request.match_info["name"]
    async with aws_bound(f"lambda-destinations dlq redrive {shlex.quote(name)}"):
        dlq, sources = await configured_dlq(console, name)
        sqs = await console.aws.client("sqs")
        sender = await console.aws.sender("sqs")
    if not sources:
        raise web.HTTPConflict(text=f"{dlq.name} is the DLQ of no SQS queue: nothing to move to\n")
    reason = _reason(form)

    async def work(job: Job) -> None:
        # Recorded by the job, not before it: a refused second redrive moved nothing.
        detail = {"to": sources, "about": dlq.visible, "job": job.id}
        action = OperatorAction(actor, "redrive", dlq.url, reason, detail)
        recorded = await console.store.add_action(action)
        report = MoveReport()
        try:
            await move_messages(
                sqs,
                dlq.url,
                target_chooser(None, sources),
                on_moved=lambda n: job.step("moved", n),
                sender=sender,
                report=report,
            )
        except Exception as exc:
            # One line, on the job's page and in the ledger: the error, what the run had done
            # and what stays, as `dlq redrive` says it.
            problem = views.problem_line(exc, console.settings)
            line = f"{problem}; {stopped_after(report, dlq.visible)}"
            outcome = {**detail, **report.as_dict(), "error": line}
            await console.store.set_action_detail(recorded, outcome)
            raise JobStopped(line) from exc
        await console.store.set_action_detail(recorded, {**detail, **report.as_dict()})
        job.errors.extend(left_undone(report.as_dict()))  # the lines `dlq redrive` prints

    title = f"redrive {dlq.name}"
    try:  # start checks and starts with no await between: of requests at once, one starts
        job = console.jobs.start("redrive", title, actor, dlq.visible, work, target=dlq.url)
    except JobRunning as running:
        raise _busy(dlq.name, running.job) from None
    raise web.HTTPSeeOther(f"/jobs/{job.id}")


def _busy(name: str, job: Job) -> web.HTTPConflict:
    """The refusal of a second redrive or a purge while a redrive of the DLQ runs."""
    return web.HTTPConflict(
        text=f"{name}: {job.title} runs (by {job.actor}): follow it at /jobs/{job.id}, "
        "and act again once it ended\n"
    )


@routes.post("/dlqs/{name}/purge")
async def purge(request: web.Request) -> web.Response:
    """Delete every message of the DLQ, once its name was typed into the form."""
    console = _console(request)
    actor, form = await console.actor(request)
    name = request.match_info["name"]
    async with aws_bound(f"lambda-destinations dlq purge {shlex.quote(name)}") as wait:
        dlq, _ = await configured_dlq(console, name)
        if (running := console.jobs.running_on(dlq.url)) is not None:
            raise _busy(dlq.name, running)
        if (empty := nothing_to_purge(dlq)) is not None:  # as `dlq purge`: nothing done, or kept
            raise web.HTTPConflict(text=f"{empty}\n")
        if form.get("confirm", "") != dlq.name:
            raise web.HTTPBadRequest(text=f"type the queue's name ({dlq.name}) to purge it\n")
        detail = {"about": dlq.held}
        recorded = await console.store.add_action(
            OperatorAction(actor, "purge", dlq.url, _reason(form), detail)
        )
        sqs = await console.aws.client("sqs")
        wait.in_doubt = (
            f"the purge of {dlq.name} is in doubt, may have been done: the DLQ's page shows "
            "how many messages it holds (SQS deletes them within a minute)"
        )
        try:
            await purge_queue(sqs, dlq)
        except PurgedRecently as exc:  # nothing done: the ledger says so
            await console.store.set_action_detail(recorded, {**detail, "refused": str(exc)})
            raise web.HTTPConflict(text=f"{exc}\n") from None
        except ClientError as exc:  # the keys or a permission refused: nothing done either
            if refused_setup(exc):
                refused = views.problem_line(exc, console.settings)
                await console.store.set_action_detail(recorded, {**detail, "refused": refused})
            raise
    raise web.HTTPSeeOther(f"/dlqs/{quote(dlq.name, safe='')}")


# -- quarantine -------------------------------------------------------------------------------

# A resend whose SendMessage was cut off at the bound: the store keeps its claim on the message.
RESEND_IN_DOUBT = (
    "the resend is in doubt, may have reached its queue: the quarantine page marks the message "
    f"resending for {RESEND_CLAIM / 60:.0f} minutes; look in its queue before resending it"
)


@routes.post("/quarantine/{quarantine_id:[0-9]+}/resend")
async def resend_quarantined(request: web.Request) -> web.Response:
    """Send a quarantined message back to its queue; the store forgets its copy."""
    console = _console(request)
    actor, form = await console.actor(request)
    quarantine_id = request.match_info["quarantine_id"]  # digits only, by the route
    row = None
    if len(quarantine_id) <= len(str(ROW_ID_MAX)) and int(quarantine_id) <= ROW_ID_MAX:
        row = await console.store.get_quarantine(int(quarantine_id))
    nonce = _nonce(request, form)
    if row is None:  # resent already: by this form (Back, then submit), it says so as it did
        first = await console.once.first_post(console.store, nonce) if nonce else None
        if first is None:
            raise web.HTTPNotFound(text="no such quarantined message (resent already?)\n")
        raise _resent(first, form)
    shown = form.get("message_id")
    if shown is None:
        raise web.HTTPBadRequest(text="the form names no message: reload the page\n")
    if shown != row.message_id:
        # The page was older than the row: the message it showed was resent, and this id is
        # another one's now (stores migrated before version 13 may have reused it).
        raise web.HTTPConflict(
            text=f"not resent: quarantined message {row.id} is not the message {echoed(shown)!r} "
            "the page showed (that one was resent already): reload the page\n"
        )
    detail = {"message_id": row.message_id, "reason": row.reason}
    kept = OperatorAction(actor, "resend", row.queue, _reason(form), detail, nonce)
    async with console.once.keep(console.store, kept) as first:
        if first is None:
            await _resend(console, row, kept)
    raise _resent(first or kept, form)


async def _resend(console: Console, row: QuarantineRow, kept: OperatorAction) -> None:
    """Send ``row``'s message back to its queue, its ledger entry ``kept`` saying so, or why
    not (then a 409 with that line)."""
    try:
        # Until its send begins (the claim may wait on the store), the bound finds it unsent.
        async with aws_bound(f"lambda-destinations quarantine resend {row.id}") as wait:
            sqs = await console.aws.sender("sqs")  # a send whose answer was lost is not resent
            new_id = await resend(
                console.store,
                sqs,
                row,
                on_sending=lambda: setattr(wait, "in_doubt", RESEND_IN_DOUBT),
            )
    except NotResent as exc:  # another form, tab or a CLI run resends it: sent once, not twice
        refused = f"not resent: {exc}"
    except ClientError as exc:  # its queue refused it (deleted, say): `quarantine resend`'s line
        refused = f"not resent: {refusal(exc, row, sqs)}"
    else:
        await console.store.set_action_detail(_id(kept), {**kept.detail, "new_message_id": new_id})
        return
    await console.store.set_action_detail(_id(kept), {**kept.detail, "refused": refused})
    raise web.HTTPConflict(text=f"{refused}\n")


def _resent(resend: OperatorAction, form: Mapping[str, str]) -> web.HTTPException:
    """The answer to a Resend whose ledger entry is ``resend``: the page it was made from, or
    the line that refused it."""
    detail = resend.detail if isinstance(resend.detail, dict) else {}
    if "refused" in detail:
        return web.HTTPConflict(text=f"{detail['refused']}\n")
    return web.HTTPSeeOther(_quarantine_page(form.get("after", "")))


def _quarantine_page(after: str) -> str:
    """The quarantine page a Resend was made from (its ``after``), or the newest one."""
    try:
        views.decode_quarantine_cursor(after)
    except ValueError:  # none (the newest page), or not the page's own
        return "/quarantine"
    return f"/quarantine?after={quote(after, safe='')}"
