"""``invoke`` (start an asynchronous invocation) and ``result`` (read how one ended)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lambda_destinations._json import strict_loads
from lambda_destinations._request_ids import (
    REQUEST_ID_LENGTH,
    is_request_id,
    may_arrive,
    request_id_in,
    stored_id,
)
from lambda_destinations._text import visible
from lambda_destinations.cli._app import (
    EXIT_FAILED,
    EXIT_NO_RESULT,
    EXIT_OK,
    EXIT_USAGE,
    ValueRefused,
    command,
    fail,
)
from lambda_destinations.cli._common import aws_errors, dumps, invokable, invokable_function
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._output import read_stdin
from lambda_destinations.cli._table import field_lines
from lambda_destinations.config import Settings
from lambda_destinations.handlers.templates import parse_duration
from lambda_destinations.redact import echoed
from lambda_destinations.times import MAX_WAIT, utc_text

# The AWS clients and the store are imported by the commands that use them, so that `invoke
# --help` and `result --help` load neither.
if TYPE_CHECKING:
    from lambda_destinations.operations.results import InvocationResult, Results


def _seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--wait``: seconds, as ``30``, ``30s``, ``5m`` or ``1h30m``; 0 to a day."""
    if value is None:
        return None
    takes = "give seconds, or hours, minutes and seconds (30, 30s, 5m, 1h30m), at most 24h"
    try:
        seconds = float(parse_duration(value))
    except ValueError:  # 2d, 1w: --wait has no larger unit than hours
        shown = echoed(value)
        raise ValueRefused(f"--wait: {shown!r} is not a duration --wait takes: {takes}") from None
    if not 0 <= seconds <= MAX_WAIT:  # nan is in no range, inf past this one
        raise ValueRefused(f"--wait: {echoed(value)!r} is not from 0 to 24h: {takes}")
    return seconds


def _function_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``FUNCTION``: a name or ARN; refused empty, or in a form Invoke does not take, here
    rather than as Lambda's 404 or validation error."""
    if not value.strip():
        raise ValueRefused("invoke: the function name is empty: give a function name or ARN")
    checked: str = invokable_function(ctx, param, value)
    return checked


WAIT_OPTION = click.option(
    "--wait",
    callback=_seconds,
    metavar="DURATION",
    help="Wait this long for the record (30s, 5m; at most 24h); exit 5 if it has not arrived.",
)
JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="One JSON object (the shape the HTTP API serves)."
)


def read_payload(text: str | None) -> bytes:
    """``--payload``: JSON text, ``@file`` or ``@-`` (standard input); checked to be JSON."""
    if text is None:
        return b"{}"
    if text.startswith("@"):
        source = text[1:]
        if not source:  # Path("") is the folder: "cannot read  (Is a directory)"
            fail("--payload: '@' names no file: give @FILE, or @- for standard input", EXIT_USAGE)
        try:
            data = read_stdin() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            fail(
                f"--payload: cannot read {source} ({exc.strerror}): name a readable file",
                EXIT_USAGE,
            )
    else:
        data = text.encode()
    try:
        strict_loads(data.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        fail(f"--payload is not JSON ({problem}): give JSON text, @file or @-", EXIT_USAGE)
    return data


@command("invoke")
@click.argument("function", callback=_function_name)
@click.option("--payload", metavar="JSON|@FILE", help="The event: JSON text, @file or @- (stdin).")
@click.option("--qualifier", help="A version or alias to invoke.")
@WAIT_OPTION
@JSON_OPTION
@settings_options
def invoke_command(
    settings: Settings,
    function: str,
    payload: str | None,
    qualifier: str | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """Invoke a function asynchronously and print the request id; --wait for its outcome.

    Lambda runs the function later (InvocationType=Event) and delivers its record to the
    function's destination queue; the worker stores it, and `result REQUEST_ID` reads it.
    A function ARN is invoked in its own region (and account); a name in the settings' region.

    \b
    Examples:
      lambda-destinations invoke orders-api --payload '{"orderId": 42}'
      lambda-destinations invoke orders-api --payload @event.json --wait 30s
      RID=$(lambda-destinations invoke orders-api); lambda-destinations result "$RID" --wait 1m

    Exit status: 0 when invoked (with --wait: when the invocation succeeded), 1 when its record
    is a failure or Lambda refused the Invoke, 5 when no record arrived within --wait.
    """
    if qualifier is not None:
        # Here, not in a callback: click may read it before FUNCTION, which it is checked against.
        invokable(function, qualifier, param="--qualifier")
    body = read_payload(payload)
    invoked: list[str] = []  # the request id, once Lambda took the Invoke
    try:
        with aws_errors(settings):
            outcome = asyncio.run(
                _invoke_then_wait(
                    settings, function, body, qualifier, wait=wait, as_json=as_json, invoked=invoked
                )
            )
    except BaseException:
        # --json --wait prints with the outcome; a wait cut short (Ctrl-C, the store lost)
        # prints the request id still, as --json alone does: the function was invoked.
        if invoked and as_json and wait is not None:
            click.echo(_invoked(invoked[0], as_json=True))
        raise
    if wait is None:
        raise SystemExit(EXIT_OK)
    _report(invoked[0], outcome, as_json=as_json, waited=wait, typed=False)


async def _invoke_then_wait(
    settings: Settings,
    function: str,
    body: bytes,
    qualifier: str | None,
    *,
    wait: float | None,
    as_json: bool,
    invoked: list[str],
) -> InvocationResult | None:
    """Invoke, print the request id (unless --json --wait prints it with the outcome), and
    with --wait wait for the outcome; ``invoked`` gets the request id once Lambda took it."""
    from lambda_destinations.aws import AwsClients
    from lambda_destinations.operations.results import invoke_async

    async with contextlib.AsyncExitStack() as stack:
        # With --wait the store is opened first: a store that cannot be read stops the
        # command before anything is invoked.
        results = None
        if wait is not None:
            results = await stack.enter_async_context(store_results(settings))
        async with AwsClients(settings) as aws:
            client = await aws.lambda_invoker()
            invoked.append(
                await invoke_async(function, body, qualifier=qualifier, lambda_client=client)
            )
            if not as_json or wait is None:
                # At once: the wait may be long, and whatever ends it, the id is printed.
                click.echo(_invoked(invoked[0], as_json=as_json))
        if results is None or wait is None:
            return None
        return await _wait(results, invoked[0], wait)


def _invoked(request_id: str, *, as_json: bool) -> str:
    """What ``invoke`` prints once the function is invoked: the request id (in JSON, with
    ``"state": "invoked"``)."""
    return dumps({"request_id": request_id, "state": "invoked"}) if as_json else request_id


def store_results(settings: Settings) -> Results:
    """The Results of the settings' store, not open yet; an in-memory store is refused
    (StoreUrlError, exit 3): it would never have a record."""
    from lambda_destinations.operations.results import Results

    results = Results(settings.store)
    results.store.refuse_in_memory()
    return results


def _request_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """The id as the store has it (:func:`stored_id`); an empty one is refused."""
    if not value.strip():
        raise click.BadParameter("give the request id Lambda returned (invoke prints it)")
    return stored_id(value)


@command("result")
@click.argument("request_id", callback=_request_id)
@WAIT_OPTION
@JSON_OPTION
@settings_options
def result_command(settings: Settings, request_id: str, wait: float | None, as_json: bool) -> None:
    """How an asynchronous invocation ended, by request id, as the store has its record.

    \b
    Examples:
      lambda-destinations result 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
      lambda-destinations result 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f --wait 30s --json

    Exit status: 0 for a success, 1 for a failure, 5 when the store has no record of the
    request id (within --wait, if given).
    """

    async def go() -> InvocationResult | None:
        async with store_results(settings) as results:
            # No record arrives under an id that is not a UUID: it is looked up once, not waited on.
            if wait is not None and may_arrive(request_id):
                return await _wait(results, request_id, wait)
            return await results.get(request_id)

    outcome = asyncio.run(go())
    _report(request_id, outcome, as_json=as_json, waited=wait, typed=True, kept=_kept(settings))


def _kept(settings: Settings) -> str:
    """What retention keeps, as the end of the line of a request id with no record: a record
    older than that may have been stored and pruned since ("" when both are kept for ever)."""
    kinds = [
        (kind, days)
        for kind, days in (
            ("successes", settings.keep_successes_days),
            ("resolved failures", settings.keep_failures_days),
        )
        if days
    ]
    if not kinds:
        return ""
    kept = ", ".join(f"{kind} {days:g} day{'' if days == 1 else 's'}" for kind, days in kinds)
    return f", or it was pruned, older than the store keeps records ({kept})"


async def _wait(results: Results, request_id: str, seconds: float) -> InvocationResult | None:
    from lambda_destinations.operations.results import ResultTimeout

    try:
        return await results.wait(request_id, timeout=seconds)
    except ResultTimeout:
        return None


def _report(
    request_id: str,
    outcome: InvocationResult | None,
    *,
    as_json: bool,
    waited: float | None,
    typed: bool,
    kept: str = "",
) -> None:
    """Print the outcome and exit 0 (success), 1 (failure) or 5 (no record). ``typed``: the
    request id is the user's (`result`), not the one `invoke` printed; ``kept``: what
    retention keeps (:func:`_kept`), for the line of no record."""
    if outcome is None:
        if as_json:
            from lambda_destinations.operations.results import unknown_result

            click.echo(dumps(unknown_result(request_id)))
        # A Lambda request id is a UUID (a store key begins with one): any other text typed was
        # cut short, mistyped or pasted with what followed it, no record comes under it (it was
        # not waited on), and that is the line's whole fix. (One `invoke` got from the endpoint
        # is what it is: moto's are no UUIDs.)
        if typed and not may_arrive(request_id):
            fail(
                f"no result for request id {echoed(request_id)}: {_not_an_id(request_id)}",
                EXIT_NO_RESULT,
            )
        within = f" within {waited:g} s" if waited is not None else " yet"
        fail(
            f"no result for request id {echoed(request_id)}{within}: the invocation may "
            "still be running or retrying, or its record has not reached the store (is the "
            f"worker running on the function's destination queue?){kept}",
            EXIT_NO_RESULT,
        )
    if as_json:
        click.echo(dumps(outcome.as_dict()))
    else:
        _show(outcome, heading=typed)  # invoke printed the id before it waited
    raise SystemExit(EXIT_OK if outcome.succeeded else EXIT_FAILED)


def _not_an_id(text: str) -> str:
    """What to give instead of ``text``, under which no record can come (not may_arrive)."""
    head = text[:REQUEST_ID_LENGTH]
    if is_request_id(head):  # more after it than a store key's ":Condition"
        return (
            "a Lambda request id has 36 characters, and more follows this one: give "
            f"{head.lower()} alone (or with :Condition, as `failures list` prints a store key)"
        )
    inside = request_id_in(text)
    if inside is not None:  # in quotes (copied from JSON), in braces, after urn:uuid:
        return f"a Lambda request id is given alone, with nothing around it: give {inside} alone"
    if len(text) >= REQUEST_ID_LENGTH:  # given whole, but mistyped or in another form
        return (
            "a Lambda request id is 8-4-4-4-12 hexadecimal digits "
            "(6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f): look for a mistyped character, or copy it "
            "as `invoke` and `failures list` print it"
        )
    return (
        "a Lambda request id has 36 characters (6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f); give it "
        "whole, as `invoke` and `failures list` print it"
    )


# What a failure's status says to an application that kept the request id.
_STATUS_NOTES = {
    "recovered": "recovered (a replay succeeded: `failures show` names its request id)",
    "replayed": "replayed (a replay is under way or failed: `failures show` lists them)",
    "replay": "replay (this is a replay's own record: `failures show` names the original)",
}


def _show(outcome: InvocationResult, *, heading: bool) -> None:
    attempts = outcome.approximate_invoke_count
    state = "succeeded" if outcome.succeeded else "failed"
    detail = ", ".join(
        part
        for part in (outcome.condition, f"{attempts} attempts" if attempts and attempts > 1 else "")
        if part
    )
    lines = [("request id", outcome.request_id)] if heading else []
    lines.append(("state", f"{state} ({detail})" if detail else state))
    function = outcome.function_name or outcome.function_arn or "-"
    lines.append(("function", f"{function}:{outcome.qualifier}" if outcome.qualifier else function))
    if not outcome.succeeded:
        error = ": ".join(p for p in (outcome.error_type, outcome.error_message) if p)
        lines.append(("error", error or "-"))
    if outcome.recovered_by:
        by = outcome.recovered_by
        note = f"recovered (replay {by} succeeded: `result {by}` has its response)"
        lines.append(("status", note))
    elif outcome.status:
        lines.append(("status", _STATUS_NOTES.get(outcome.status, outcome.status)))
    if outcome.timestamp is not None:
        lines.append(("finished", utc_text(outcome.timestamp) + " UTC"))
    lines.append(("response", dumps(outcome.response)))
    click.echo(visible("\n".join(field_lines(lines, 12))))
