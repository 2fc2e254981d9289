"""Everything about one stored record, as ``failures show`` prints it and the console's failure
page shows it: one reading of the store for both."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from typing import Any

from lambda_destinations.errors import LambdaDestinationsError
from lambda_destinations.redact import redact
from lambda_destinations.store import (
    DeliveryRow,
    HandlerRun,
    InvocationFilter,
    InvocationRow,
    ReplayAttempt,
    RunState,
    Store,
    utcnow,
)

# The start of a request id as typed: hex digits and hyphens, short of a whole one.
_ID_HEAD = re.compile(r"[0-9a-f-]{4,35}")
_AMBIGUOUS_SHOWN = 3


def carried_batch(row: InvocationRow) -> Any:
    """The batch of records a stream failure's record carries, as the function received it;
    None when it carries none (through SQS or SNS, only where the batch was).

    An S3 destination's record holds the whole event in ``payload`` as an escaped JSON string:
    it is given parsed, so that it reads as the event it is (a string that is no JSON, as it
    is)."""
    # The decoder gives a stream failure's payload as its request payload (replay reads the same).
    batch = row.request_payload
    if row.kind != "stream-failure" or batch is None:
        return None
    if isinstance(batch, str):
        try:
            return json.loads(batch)
        except ValueError:
            return batch
    return batch


# Where a Kinesis or DynamoDB stream failure's record says its batch is: the AWS CLI service
# that reads it there, its option for the batch's first sequence number, the most records one
# GetRecords returns, and whether GetRecords takes the stream's ARN (Kinesis's does, and needs
# it for a stream of another account).
_STREAM_READERS = {
    "KinesisBatchInfo": ("kinesis", "--starting-sequence-number", 10000, True),
    "DDBStreamBatchInfo": ("dynamodbstreams", "--sequence-number", 1000, False),
}


def stream_read_command(record: Any) -> str | None:
    """The AWS CLI command that reads a Kinesis or DynamoDB stream failure's batch from its
    stream, from its first record (the stream keeps it for its retention period only); None
    for any other record, and for a Kafka batch (each partition's offsets are in the record,
    and the cluster's own tools read them)."""
    if not isinstance(record, dict):
        return None
    name = next((n for n in _STREAM_READERS if isinstance(record.get(n), dict)), None)
    if name is None:
        return None
    service, start_option, most, by_arn = _STREAM_READERS[name]
    info = record[name]
    arn, shard, first = (info.get(k) for k in ("streamArn", "shardId", "startSequenceNumber"))
    if not all(isinstance(value, str) and value for value in (arn, shard, first)):
        return None
    parts = arn.split(":")
    region = f" --region {shlex.quote(parts[3])}" if len(parts) > 5 and parts[3] else ""
    size = info.get("batchSize")
    limit = f" --limit {min(size, most)}" if isinstance(size, int) and size > 0 else ""
    stream = f" --stream-arn {shlex.quote(arn)}"
    iterator = (
        f"aws {service} get-shard-iterator{region}{stream} --shard-id {shlex.quote(shard)} "
        f"--shard-iterator-type AT_SEQUENCE_NUMBER {start_option} {shlex.quote(first)} "
        "--query ShardIterator --output text"
    )
    return (
        f"aws {service} get-records{region}{stream if by_arn else ''}{limit} "
        f'--shard-iterator "$({iterator})"'
    )


class AmbiguousId(LambdaDestinationsError):
    """The first characters of a request id, which start several stored ones."""


async def whole_id(store: Store, ident: str) -> str:
    """``ident``, or the one stored request id whose first 4 characters or more it is (as
    `failures list` shows them); one that starts none is left as it is, for the caller to
    report. One that starts several raises AmbiguousId naming them: give more of it. Read in
    lower case, as Lambda writes request ids (and ``stored_id`` reads whole ones)."""
    head = ident.lower()
    if not _ID_HEAD.fullmatch(head) or await store.get_invocation(ident) is not None:
        return ident
    found = await store.request_ids_starting(head, limit=_AMBIGUOUS_SHOWN + 1)
    if len(found) > 1:
        named = ", ".join(found[:_AMBIGUOUS_SHOWN])
        more = ", ..." if len(found) > _AMBIGUOUS_SHOWN else ""
        raise AmbiguousId(
            f"{ident!r} starts more than one request id ({named}{more}): give more of it, "
            "or the whole one"
        )
    return found[0] if found else ident


@dataclasses.dataclass(slots=True)
class FailureDetail:
    row: InvocationRow
    deliveries: list[DeliveryRow]
    runs: list[HandlerRun]
    replays: list[ReplayAttempt]
    others: list[str]  # other keys of the same request id (another condition, say)
    replay_of: ReplayAttempt | None  # the attempt whose new invocation this record is

    @property
    def invoked_elsewhere(self) -> bool:
        """Whether an attempt invoked another version or alias than the record names (a
        replay given a qualifier): then its replays are shown with the function invoked."""
        record = self.row.function_arn
        return record is not None and any(a.function_arn != record for a in self.replays)


async def failure_detail(store: Store, row: InvocationRow) -> FailureDetail:
    """``row`` with its deliveries, handler runs, replays, the other records of its request id,
    and the replay it is the record of, if it is one."""
    others: list[str] = []
    if row.request_id:
        same = await store.list_invocations(
            InvocationFilter(failed_only=False, request_ids=[row.request_id])
        )
        others = [r.key for r in same if r.key != row.key]
    # A run of one of several recipients is named for its number (``oncall#+14155552671``):
    # masked, as logs show it.
    runs = [
        dataclasses.replace(run, handler=redact(run.handler))
        for run in await store.handler_runs(row.key)
    ]
    return FailureDetail(
        row,
        await store.deliveries(row.key),
        runs,
        await store.replays(row.key),
        others,
        await store.replay_for_request(row.request_id) if row.request_id else None,
    )


def run_status(run: HandlerRun) -> str:
    """What a handler run's row says to a reader. The store's state is ``claimed`` until the
    run completes: held by a delivery that runs the handler, released by one whose handler
    failed (its error kept), or left by a worker that stopped, its claim lapsing."""
    if run.state == RunState.COMPLETED:
        return "completed"
    if run.owner is None:
        return "failed" if run.last_error else "released"
    if run.claimed_until is not None and run.claimed_until <= utcnow():
        return "claim expired"
    return "running"


def logs_command_line(ident: str) -> str:
    """The command that prints the function's log lines of the record ``ident`` names (`failures
    logs`, read by ``operations.function_logs``: not imported by what only shows the line)."""
    return f"lambda-destinations failures logs {shlex.quote(ident)}"
