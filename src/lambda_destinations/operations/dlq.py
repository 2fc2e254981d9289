"""Queues as an operator names them, and a look into a dead-letter queue: resolve a queue by
URL, name or ARN, list the queues that dead-letter to it, peek at its messages and say what
each one is.

What ``dlq peek`` and ``dlq purge`` (and the console's DLQ page) need, apart from what only a
redrive uses (``operations.redrive``: moving messages, re-invoking them through the replay
ledger, reading records from S3), so that looking costs no import of the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_destinations._urls import queue_name, queue_path, url_region
from lambda_destinations.aws import all_items
from lambda_destinations.errors import LambdaDestinationsError, QueueNotFound
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import error_code
from lambda_destinations.worker.queues import (
    NONEXISTENT,
    QUEUE_NAME,
    REASON_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    client_region,
    is_missing_queue,
    parse_arn,
    topic_instead,
)

# The MaximumMessageSize taken for a queue whose attributes do not say it (credentials that may
# not read them): SQS's default until 2025, when it became 1 MiB. A queue may still have it, and
# taking more than a queue's limit would make messages too long for it.
DEFAULT_MAX_MESSAGE_SIZE = 262_144

# Long polls (1 s) rather than short ones: a short poll samples a subset of SQS's servers and
# can answer "empty" while messages remain.
RECEIVE_WAIT = 1


@dataclasses.dataclass(frozen=True, slots=True)
class QueueRef:
    """A queue as an operator names it, resolved: URL, name, ARN and attributes."""

    url: str
    name: str
    arn: str
    attributes: Mapping[str, str]

    @property
    def fifo(self) -> bool:
        return self.attributes.get("FifoQueue", "false").lower() == "true"

    @property
    def max_message_size(self) -> int:
        return max_message_size(self.attributes)

    @property
    def visible(self) -> int:
        return int(self.attributes.get("ApproximateNumberOfMessages", "0"))

    @property
    def in_flight(self) -> int:
        return int(self.attributes.get("ApproximateNumberOfMessagesNotVisible", "0"))

    @property
    def delayed(self) -> int:
        return int(self.attributes.get("ApproximateNumberOfMessagesDelayed", "0"))

    @property
    def held(self) -> int:
        """The messages it holds by SQS's counts: visible, in flight and delayed."""
        return self.visible + self.in_flight + self.delayed

    @property
    def shows_none(self) -> bool:
        """No message visible, in flight or delayed, by SQS's counts: approximate, so a message
        sent a moment ago may not be counted yet."""
        return not self.held

    @property
    def shows_none_visible(self) -> bool:
        """No message visible by SQS's counts: nothing a receive or a move task could take now
        (those in flight or delayed show again when their visibility timeout or delay ends)."""
        return not self.visible


def max_message_size(attributes: Mapping[str, str]) -> int:
    """The most bytes a message of the queue may hold, by its attributes (SQS weighs the body
    and the message attributes); DEFAULT_MAX_MESSAGE_SIZE when they do not say."""
    try:
        return int(attributes["MaximumMessageSize"])
    except (KeyError, ValueError):
        return DEFAULT_MAX_MESSAGE_SIZE


async def resolve_queue(sqs: Any, ident: str) -> QueueRef:
    """A queue by URL, name or ARN; QueueNotFound naming it when it does not exist, or is of
    another region than the client's."""
    _refuse_what_no_queue_is(ident)
    region = _region_named(ident)
    if region is not None and region != (own := client_region(sqs)):
        # An ARN looked up by name in our region would be another queue (or none); SQS answers
        # that a URL's queue does not exist (an emulator reads its own region's of that name).
        raise QueueNotFound(
            f"queue {echoed(ident)!r} is in {region}, this command in {own}: "
            f"run it with --region {region}"
        )
    try:
        if ident.startswith("arn:"):
            try:
                _, account, name = parse_arn(ident)
            except ValueError:
                raise QueueNotFound(
                    f"{echoed(ident)!r} is not an SQS queue ARN: {_QUEUE_FORMS}"
                ) from None
            found = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            url = found["QueueUrl"]
        elif "://" in ident:
            url = ident
        else:
            url = (await sqs.get_queue_url(QueueName=ident))["QueueUrl"]
        response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    except ClientError as exc:
        if is_missing_queue(exc) or error_code(exc) in NONEXISTENT:
            meant = await _queue_meant(sqs, ident)
            raise QueueNotFound(
                f"queue {echoed(ident)!r} does not exist{meant}: check the name or URL (and "
                "the region)"
            ) from None
        raise
    attributes: dict[str, str] = response.get("Attributes", {})
    return QueueRef(url, queue_name(url), attributes.get("QueueArn", ""), attributes)


_QUEUE_FORMS = "give the queue's URL, name or arn:aws:sqs:REGION:ACCOUNT:NAME"


async def _queue_meant(sqs: Any, ident: str) -> str:
    """`` (did you mean 'x'?)`` for the queue whose name is closest to the one ``ident`` (a
    name, URL or ARN that names no queue) gives, in its form; empty when none is close, or
    the queues cannot be listed (credentials without ``sqs:ListQueues``). One page of the
    listing: SQS's first 1,000 queues."""
    import difflib

    arn = ident.startswith("arn:")
    given = ident.rsplit(":" if arn else "/", 1)[-1]
    try:
        response = await sqs.list_queues(MaxResults=1000)
    except (ClientError, BotoCoreError):  # the queue's own line is what matters
        return ""
    urls = {queue_name(url): url for url in response.get("QueueUrls", [])}
    close = difflib.get_close_matches(given, urls, n=1, cutoff=0.8)
    if not close:
        return ""
    url = urls[close[0]]
    if arn:  # the ARN of the queue listed: its account, with the region and partition given
        account = queue_path(url).partition("/")[0]
        meant = f"{ident.rsplit(':', 2)[0]}:{account}:{close[0]}"
    else:
        meant = url if "://" in ident else close[0]
    return f" (did you mean {echoed(meant)!r}?)"


def _refuse_what_no_queue_is(ident: str) -> None:
    """QueueNotFound saying what ``ident`` is when no queue can be it: a topic's ARN (the way
    to its queue), another service's ARN, a name SQS would refuse. Looked up, each was "does
    not exist: check the name", or "not an SQS queue ARN" with no way on."""
    if "://" in ident:
        return
    if not ident.startswith("arn:"):
        if not QUEUE_NAME.fullmatch(ident):
            raise QueueNotFound(
                f"no queue can be named {echoed(ident)!r}: a queue's name is 1 to 80 letters, "
                f"digits, - and _ (a FIFO queue's ends in .fifo); {_QUEUE_FORMS}"
            )
        return
    if way := topic_instead(ident):
        raise QueueNotFound(f"{echoed(ident)!r} is an SNS topic's ARN, not a queue's: {way}")
    service = ident.split(":")[2] if ident.count(":") >= 2 else ""
    if service and service != "sqs":
        raise QueueNotFound(
            f"{echoed(ident)!r} is a {echoed(service)} ARN, not an SQS queue's: {_QUEUE_FORMS}"
        )


def _region_named(ident: str) -> str | None:
    """The region a queue ARN, or an AWS queue URL, names; None for a name, a URL of another
    endpoint, or an ARN that is none (refused as such when it is looked up)."""
    if ident.startswith("arn:"):
        try:
            return parse_arn(ident)[0]
        except ValueError:
            return None
    return url_region(ident) if "://" in ident else None


async def source_queues(sqs: Any, dlq: QueueRef) -> list[str]:
    """URLs of the queues whose redrive policy points at ``dlq``."""
    return await all_items(
        sqs,
        "list_dead_letter_source_queues",
        "queueUrls",
        QueueUrl=dlq.url,
        PaginationConfig={"PageSize": 1000},
    )


async def receive(sqs: Any, url: str, wanted: int, visibility: int) -> list[dict[str, Any]]:
    """Up to ``wanted`` messages of ``url``, with every attribute, hidden for ``visibility`` s."""
    response = await sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=wanted,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=RECEIVE_WAIT,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


# SQS's answer to a second purge of a queue within 60 s, by its Query and JSON protocols' codes.
_PURGE_IN_PROGRESS = {"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"}


class PurgedRecently(LambdaDestinationsError):
    """SQS refused a purge: the queue was purged less than a minute ago. The line says what to
    do."""


def nothing_to_purge(ref: QueueRef) -> str | None:
    """The line of a purge of a queue SQS counts no message in (``dlq purge`` and the console
    purge nothing then), else None."""
    return f"{ref.name} is empty: nothing to purge" if ref.shows_none else None


async def purge(sqs: Any, ref: QueueRef) -> None:
    """Delete every message of ``ref`` (SQS does it within a minute); :class:`PurgedRecently`
    when SQS allows no purge of it yet (one a minute per queue)."""
    try:
        await sqs.purge_queue(QueueUrl=ref.url)
    except ClientError as exc:
        if error_code(exc) not in _PURGE_IN_PROGRESS:
            raise
        raise PurgedRecently(
            f"{ref.name} was purged less than a minute ago, and SQS allows one purge a minute "
            "per queue: its messages are being deleted; peek at it in a minute, and purge again "
            "if some remain"
        ) from None


# -- peek -------------------------------------------------------------------------------------


async def peek(sqs: Any, url: str, limit: int, *, visibility: int = 30) -> list[dict[str, Any]]:
    """Up to ``limit`` messages of a queue, each once, then made visible again.

    SQS has no read-only look: messages are received (hidden for ``visibility`` seconds so that
    each is seen once) and then released with visibility 0. Their receive count goes up by one.
    """
    seen: dict[str, dict[str, Any]] = {}
    try:
        while len(seen) < limit:
            batch = await receive(sqs, url, min(10, limit - len(seen)), visibility)
            if not batch:
                break
            new = [m for m in batch if m["MessageId"] not in seen]
            if not new:
                break
            for message in new:
                seen[message["MessageId"]] = message
    finally:
        await release(sqs, url, [m["ReceiptHandle"] for m in seen.values()])
    return list(seen.values())


async def release(sqs: Any, url: str, receipts: Sequence[str]) -> None:
    """Make received messages visible again at once (ten at a time)."""
    for start in range(0, len(receipts), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
            for i, receipt in enumerate(receipts[start : start + 10])
        ]
        await sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def describe_message(message: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """What a person wants to know of a dead-lettered message, as a flat JSON-able dict."""
    # Imported here: the schemas (pydantic models) cost `dlq purge`, which resolves a queue
    # with this module and decodes no message, 0.13 billion instructions.
    from lambda_destinations.schemas import summarize

    attributes = message.get("Attributes", {})
    message_attributes = message.get("MessageAttributes") or {}
    sent_ms = attributes.get("SentTimestamp")
    sent = dt.datetime.fromtimestamp(int(sent_ms) / 1000, dt.UTC) if sent_ms else None
    receives = int(attributes.get("ApproximateReceiveCount", "1"))
    out: dict[str, Any] = {
        "message_id": message.get("MessageId"),
        "sent_at": sent.isoformat() if sent else None,
        "age_seconds": round((now - sent).total_seconds()) if sent else None,
        # This look was a receive too: report the count before it.
        "receive_count": max(0, receives - 1),
        "quarantine_reason": string_attribute(message_attributes, REASON_ATTRIBUTE),
        "source_queue": string_attribute(message_attributes, SOURCE_ATTRIBUTE),
    }
    out.update(summarize(message.get("Body", ""), message_attributes or None))
    return out


def string_attribute(attributes: Mapping[str, Any], name: str) -> str | None:
    """The string value of the message attribute ``name``; None when the message has none."""
    value = attributes.get(name)
    if isinstance(value, Mapping):
        text = value.get("StringValue")
        return str(text) if text is not None else None
    return None
