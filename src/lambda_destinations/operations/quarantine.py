"""Messages the worker quarantined: described for people, and sent back to their queue.

The store keeps every quarantined message whole (body, attributes, reason). When the queue has
no DLQ the store holds the only copy, so this is the way back: ``resend`` claims the stored
copy, sends the body and the message's own attributes to the queue it came from, then forgets
the stored copy (unless asked to keep it). The claim makes resends of one message at once (two
clicks, two terminals) send it once: the others send nothing and say why. Interrupted between
the send and the delete, the message is in both places, and the worker's idempotency absorbs
the duplicate; interrupted earlier, it is still in the store, its claim lapsing after
``RESEND_CLAIM`` seconds.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from lambda_destinations._urls import queue_name, url_region
from lambda_destinations.store import QuarantineRow, Store

# The worker's own attributes, added when it sent the message to a DLQ: not the message's.
_OWN_ATTRIBUTE_PREFIX = "LambdaDestinations."

# How long a resend holds a message: far longer than one SendMessage with its retries takes.
RESEND_CLAIM = 300.0
ALREADY_RESENT = "resent already: the store no longer holds it"
RESENT_MEANWHILE = (
    "resent by another caller since this one read it (its copy kept: --keep): resend it "
    "again to send it once more"
)
NOT_SENT_MEANWHILE = (
    "another caller's resend of it, under way when this one read it, sent nothing (its "
    "queue refused it): resend it again"
)
BEING_RESENT = (
    f"being resent by another caller just now (or by one interrupted: try again in "
    f"{RESEND_CLAIM / 60:.0f} minutes)"
)


def resending_since(row: QuarantineRow, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the resend that holds the message now claimed it (its claim lasts
    ``RESEND_CLAIM``); None when no resend holds it."""
    if row.resend_claimed_until is None or not row.resending(now):
        return None
    return row.resend_claimed_until - dt.timedelta(seconds=RESEND_CLAIM)


def resend_status(row: QuarantineRow, now: dt.datetime | None = None) -> str:
    """``resending since HH:MM:SS`` (UTC) while a resend holds the message, else empty."""
    since = resending_since(row, now)
    return "" if since is None else f"resending since {since.astimezone(dt.UTC):%H:%M:%S}"


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class NotResent(Exception):
    """This caller sent nothing: another one resent the message, or is resending it. The
    text says which (``ALREADY_RESENT``, ``BEING_RESENT``)."""


def describe_quarantined(
    row: QuarantineRow, *, body: bool = False, now: dt.datetime | None = None
) -> dict[str, Any]:
    """A quarantined message as one flat JSON-able dict (the documented ``--json`` shape).

    ``resending_since`` is when the resend under way claimed the message (None when no resend
    holds it at ``now``): a second operator sees it and need not resend it too.
    """
    # Imported here: the schemas (pydantic models) cost `quarantine list` on a store with
    # nothing quarantined.
    from lambda_destinations.schemas import summarize

    out: dict[str, Any] = {
        "id": row.id,
        "quarantined_at": row.quarantined_at.isoformat(),
        "queue": row.queue,
        "message_id": row.message_id,
        "receive_count": row.receive_count,
        "reason": row.reason,
        "key": row.key,
        "resending_since": _iso(resending_since(row, now)),
    }
    out.update(summarize(row.body, row.message_attributes or None))
    out["key"] = out["key"] or row.key  # what does not decode keeps the stored key
    if body:
        out["body"] = row.body
        out["message_attributes"] = row.message_attributes
    return out


def pretty_body(text: str) -> str:
    """The body as indented JSON when it is JSON, else as it is.

    Also as it is when it is nested too deeply to parse or indent (``[[[...]]]``, which the
    worker quarantines for that reason): ``quarantine show``, ``dlq peek --body`` and the
    console's quarantine page must still show it.
    """
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def attribute_text(value: dict[str, Any]) -> str:
    """A message attribute's value on one line: a String or Number one as it is, a Binary one
    as base64 (as received, bytes; as stored, base64 text already)."""
    if "StringValue" in value:
        return str(value["StringValue"])
    binary = value.get("BinaryValue")
    if binary is None:
        return str(value.get("DataType", ""))
    text = binary if isinstance(binary, str) else base64.b64encode(binary).decode("ascii")
    return f"{text} ({value.get('DataType', 'Binary')}, base64)"


async def resend(
    store: Store,
    sqs: Any,
    row: QuarantineRow,
    *,
    keep: bool = False,
    on_sent: Callable[[str], None] = lambda new_id: None,
    on_sending: Callable[[], None] = lambda: None,
) -> str:
    """Send ``row``'s message back to its queue; forget the stored copy unless ``keep``.

    Give ``sqs`` a client that sends each request once (``AwsClients.sender("sqs")``): a
    botocore retry of a send whose answer was lost would put the message in the queue again.
    Returns the new SQS message id. Raises :class:`NotResent` when another caller holds the
    message or resent it already: of resends at once, exactly one sends. A send the queue
    refused lets the message go again (a later resend may try); a send in doubt (the
    connection broke) keeps the claim until it lapses. ``on_sent`` hears the new message id as
    soon as SQS answers, before the stored copy is forgotten: a caller cut short after it knows
    the message was sent; ``on_sending``, once the message is claimed and its send begins: a
    caller cut short before it knows nothing was sent.
    """
    if row.id is None:
        raise ValueError("only a stored quarantined message (with an id) can be resent")
    # Imported here: botocore's exceptions cost `quarantine list`, which sends nothing.
    from lambda_destinations.retrying import answered, answered_and_transient, in_process_retrying

    # Claimed only as read: a --keep resend since then leaves the copy, and its mark.
    claimed = await store.claim_quarantine(row.id, RESEND_CLAIM, as_read=row)
    if claimed is None:
        raise NotResent(_not_claimed(await store.get_quarantine(row.id), row))
    on_sending()
    try:
        # Tried again only when SQS answered (throttled, say): a send whose answer was lost
        # may be in the queue, and is not sent again.
        async for retry in in_process_retrying(3, 30.0, retry_if=answered_and_transient):
            with retry:
                answer = await sqs.send_message(**_send_request(claimed))
    except Exception as exc:
        if answered(exc):  # nothing was sent: the row as it was before the claim
            await store.release_quarantine(row.id, as_read=row)
        raise
    new_id = str(answer.get("MessageId", ""))
    on_sent(new_id)
    if keep:
        await store.release_quarantine(row.id, sent=True)
    else:
        await store.delete_quarantine(row.id)
    return new_id


def refusal(exc: Exception, row: QuarantineRow, sqs: Any) -> str:
    """Why ``row``'s queue refused its message, sent by the client ``sqs``, and what to do:
    SQS's own words for a deleted queue name neither the queue nor a way on; and it says the
    same of a queue of another region than the one asked (a store that workers of two regions
    share). The region asked is the client's: a profile's, when the settings name none."""
    # Imported here, as in ``resend``: botocore costs `quarantine list`.
    from lambda_destinations.retrying import first_line, with_fix
    from lambda_destinations.worker.queues import client_region, is_missing_queue

    if is_missing_queue(exc):
        region = client_region(sqs)
        if (home := url_region(row.queue)) is not None and home != region:
            return (
                f"its queue {queue_name(row.queue)} is in {home}, and SQS was asked in "
                f"{region}: resend it with LAMBDA_DESTINATIONS_REGION={home}; the stored copy "
                "stays"
            )
        return (
            f"its queue {queue_name(row.queue)} does not exist (deleted, or renamed): create it "
            f"again and resend, or send the body yourself (`quarantine show {row.id} --json`); "
            "the stored copy stays"
        )
    return with_fix(exc, first_line(exc), credentials="the AWS credentials", on=row.queue)


def _not_claimed(now: QuarantineRow | None, read: QuarantineRow) -> str:
    """Why a resend could not claim a message, by the row as it is ``now`` and as it was
    ``read``. Read while another resend held it, and since let go with a mark from before
    that claim began (or none), that resend sent nothing: a kept send marks a later time."""
    if now is None:
        return ALREADY_RESENT
    if now.resending():
        return BEING_RESENT
    held = read.resend_claimed_until
    mark = now.resend_claimed_until
    if held is not None and (mark is None or mark <= held - dt.timedelta(seconds=RESEND_CLAIM)):
        return NOT_SENT_MEANWHILE
    return RESENT_MEANWHILE


def _send_request(row: QuarantineRow) -> dict[str, Any]:
    """The SendMessage arguments that put ``row``'s message back: its body, its own attributes."""
    # Imported here: the queues' module imports botocore and tenacity, which `quarantine list`
    # and `show` (reading the store) do not need.
    from lambda_destinations.worker.queues import sendable_attribute

    attributes = {
        name: sendable_attribute(value)
        for name, value in (row.message_attributes or {}).items()
        if not name.startswith(_OWN_ATTRIBUTE_PREFIX)
    }
    request: dict[str, Any] = {"QueueUrl": row.queue, "MessageBody": row.body}
    if attributes:
        request["MessageAttributes"] = attributes
    return request
