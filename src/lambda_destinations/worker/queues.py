"""The queues a worker polls: URL, name, visibility timeout and dead-letter queue; and the
message attributes the worker adds to what it quarantines into a DLQ."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from lambda_destinations._urls import queue_name, url_region
from lambda_destinations.aws_operations import iam_action
from lambda_destinations.errors import ConfigError
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import DENIED_CODES, error_code, first_line

NONEXISTENT = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
# What SQS takes as a queue's name: up to 80 letters, digits, - and _ (and .fifo).
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}(?:\.fifo)?")

# Message attributes the worker adds to a quarantined message in the DLQ. SQS allows ten
# attributes a message, so the original ones keep at most the rest (the store has them all).
REASON_ATTRIBUTE = "LambdaDestinations.Reason"
SOURCE_ATTRIBUTE = "LambdaDestinations.SourceQueue"
# Set by `dlq redrive` on the messages it moves (the run's id); kept when the message is
# quarantined again, so the redrive knows it came back and does not move it twice.
REDRIVE_ATTRIBUTE = "LambdaDestinations.Redrive"
OUR_ATTRIBUTES = 2
MAX_ATTRIBUTES = 10

# What to do when a polled queue's DLQ was deleted: said by a quarantine that could not send
# its copy, and by the depth sampler that found it gone.
DLQ_GONE = (
    "create it again with the same name, or give the queue a redrive policy to another DLQ "
    "(the worker follows either by itself); meanwhile a quarantined message is kept by the "
    "store alone (`lambda-destinations quarantine list` shows it)"
)
DEFAULT_VISIBILITY = 30  # SQS's VisibilityTimeout for a queue created without one
NO_DLQ = (
    "queue has no dead-letter queue: quarantined messages are kept in the store only, and "
    "retries never end; add a RedrivePolicy"
)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueInfo:
    """A polled queue as the worker needs it."""

    url: str
    name: str
    arn: str | None
    visibility_timeout: int
    fifo: bool
    dlq_url: str | None  # from the RedrivePolicy; None: quarantine into the store only
    max_receive_count: int | None
    # The RedrivePolicy's deadLetterTargetArn, even when that DLQ does not exist (dlq_url None):
    # what a policy read later is compared with.
    dlq_arn: str | None = None


def asked_visibility(setting: int | None, queue: QueueInfo) -> int:
    """Seconds each receive from ``queue`` asks its messages be hidden for, and the heartbeat
    extends them by: the visibility_timeout ``setting``, else the queue's own. A queue's 0
    (SQS allows it) is SQS's default instead: 0 hid nothing, so every receive brought back
    the messages being handled, and their first receipts' deletes were refused."""
    return setting or queue.visibility_timeout or DEFAULT_VISIBILITY


def unhidden_warning(queue: QueueInfo) -> str:
    """The start's line for a queue whose VisibilityTimeout is 0, the setting unset."""
    return (
        f"the VisibilityTimeout of {queue.name} is 0: each receive asks {DEFAULT_VISIBILITY} s "
        "(SQS's default) instead; set the queue's VisibilityTimeout, or "
        "LAMBDA_DESTINATIONS_VISIBILITY_TIMEOUT"
    )


def arn_name(arn: str) -> str:
    """The queue's name from its ARN (a redrive policy names its DLQ so)."""
    return arn.rsplit(":", 1)[-1]


def configured_name(url_or_name: str) -> str:
    """The name a configured queue (a URL, a name or an ARN) has once described
    (``QueueInfo.name``), known before SQS answers."""
    return arn_name(url_or_name) if url_or_name.startswith("arn:") else queue_name(url_or_name)


def parse_arn(arn: str) -> tuple[str, str, str]:
    """(region, account, name) of an SQS queue ARN."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    return parts[3], parts[4], parts[5]


def topic_instead(arn: str) -> str | None:
    """The way on when ``arn`` is an SNS topic's, given where a queue's was asked for (a
    destination's ARN copied as it is): the queue subscribed to it; None for any other."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns":
        return None
    return (
        "name the SQS queue subscribed to the topic (`aws sns list-subscriptions-by-topic "
        f"--topic-arn {echoed(arn)}` lists them)"
    )


def polled_dlqs(queues: Iterable[tuple[str, str | None, str | None]]) -> Iterator[tuple[str, str]]:
    """(DLQ, its queue) for each polled queue that is the dead-letter queue (the RedrivePolicy
    target) of another polled one; ``queues``: (name, ARN, DLQ ARN) of each. A Lambda
    function's own DLQ (its DeadLetterConfig) is no queue's redrive target: it is not one."""
    listed = list(queues)
    sources = {dlq_arn: name for name, _arn, dlq_arn in listed if dlq_arn}
    for name, arn, _dlq_arn in listed:
        if arn and (source := sources.get(arn)) and source != name:
            yield name, source


def polled_dlq(dlq: str, source: str, queues_in: str) -> tuple[str, str]:
    """(What is wrong, the fix) when the DLQ ``dlq`` of the polled queue ``source`` is polled
    too: the worker takes back what SQS and its own quarantine put there."""
    return (
        f"{dlq} is the dead-letter queue of polled queue {source}: the worker would take back "
        "what is dead-lettered there",
        f"take it out of {queues_in} (inspect it with `dlq peek {dlq}`, move it back with "
        f"`dlq redrive {dlq}`)",
    )


def named_alike(queues: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str, str]]:
    """(one, its ARN, another, its ARN) for each two different queues of one name among
    ``queues`` (what each is shown as, its ARN): queues of two accounts. The worker tells
    its queues apart by name, so a pair cannot be polled by one worker (see
    :func:`named_alike_problem`); one queue listed twice (one ARN) is no pair."""
    first: dict[str, tuple[str, str]] = {}
    for shown, arn in queues:
        one, one_arn = first.setdefault(arn_name(arn), (shown, arn))
        if one_arn != arn:
            yield one, one_arn, shown, arn


def named_alike_problem(
    pair: tuple[str, str, str, str], queues_in: str, *, dlqs: bool = False
) -> tuple[str, str]:
    """(What is wrong, the fix) for a pair of :func:`named_alike`: polled queues, or (``dlqs``)
    the DLQs of two polled queues (the pair as the polled queues' names, the DLQs' ARNs)."""
    one, one_arn, other, other_arn = pair
    accounts = f"of accounts {_account(one_arn)} and {_account(other_arn)}"
    named = f"two queues named {arn_name(one_arn)}, {accounts}"
    if dlqs:
        wrong = (
            f"the DLQs of {one} and {other} are {named}, which the worker tells apart by "
            "name only (the queue label of the depths it samples for /metrics)"
        )
    else:
        wrong = (
            f"queues {one!r} and {other!r} are {named}, which the worker tells apart by name "
            "only (the queue label of its metrics, its log lines, /readyz)"
        )
    return wrong, f"poll them with a worker each (each with its own {queues_in})"


def _account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) == 6 else "?"


def is_missing_queue(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in NONEXISTENT


def same_queue(seen: dict[str, str], configured: str, identity: str) -> str | None:
    """What is wrong when another entry of ``queues`` reached the queue ``identity`` (its ARN,
    or URL), else None after noting this entry. A name and a URL of one queue are two entries
    the settings cannot tell apart, and one queue polled twice cannot start."""
    if (other := seen.setdefault(identity, configured)) != configured:
        return f"queues {other!r} and {configured!r} are the same queue"
    return None


def client_region(sqs: Any) -> str:
    """The region an SQS client asks: the one every queue name is looked up in."""
    return str(sqs.meta.region_name)


def queue_lookup(sqs: Any, name_or_arn: str, *, queues_in: str) -> dict[str, str]:
    """GetQueueUrl's arguments for a configured queue name or ARN; ConfigError for an ARN
    that is no SQS queue's, or of another region than the client's: GetQueueUrl looks the
    name up in the client's region, where a same-named queue is not the one meant.

    ``queues_in`` is where the queues were set, for the fix an error names (``--queues``, the
    variable, the TOML file: ``Settings.set_in("queues")``)."""
    return lookup_in(client_region(sqs), name_or_arn, queues_in=queues_in)


def check_configured_queue(region: str | None, configured: str, *, queues_in: str) -> None:
    """ConfigError for an entry of ``queues`` that no call to SQS in ``region`` (None: not
    known yet) could find: no URL, name or ARN, an SNS topic's ARN, another region's queue.
    Asked before the worker opens or binds anything."""
    if "://" in configured:
        url_in_region(region, configured, queues_in=queues_in)
    else:
        lookup_in(region, configured, queues_in=queues_in)


def lookup_in(region: str | None, name_or_arn: str, *, queues_in: str) -> dict[str, str]:
    """:func:`queue_lookup` for a client of ``region`` (None: no region to compare with)."""
    if not name_or_arn.startswith("arn:"):
        if not QUEUE_NAME.fullmatch(name_or_arn):
            # No queue can have this name: "does not exist: create the queue" would mislead
            # (a URL without its scheme, a path, a typo'd ARN).
            raise ConfigError(
                f"queue {echoed(name_or_arn)!r} is no queue URL, name or ARN: fix {queues_in} "
                "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, a name of letters, digits, - "
                "and _, or arn:aws:sqs:REGION:ACCOUNT:NAME)"
            )
        return {"QueueName": name_or_arn}
    if way := topic_instead(name_or_arn):
        raise ConfigError(
            f"queue {echoed(name_or_arn)!r} is an SNS topic's ARN, not a queue's: fix "
            f"{queues_in}: {way}"
        )
    try:
        arn_region, account, name = parse_arn(name_or_arn)
    except ValueError:
        raise ConfigError(
            f"queue {name_or_arn!r} is not an SQS queue ARN: fix {queues_in} "
            "(a URL, a name, or arn:aws:sqs:REGION:ACCOUNT:NAME)"
        ) from None
    if region is not None and arn_region != region:
        raise ConfigError(
            f"queue {name_or_arn!r} is in {arn_region}, the worker in {region}: set "
            f"LAMBDA_DESTINATIONS_REGION={arn_region}, or run one worker per region"
        )
    return {"QueueName": name, "QueueOwnerAWSAccountId": account}


def check_url_region(sqs: Any, url: str, *, queues_in: str) -> None:
    """ConfigError for a queue URL of another region than the client's: SQS answers a request
    made in one region about another's queue that the queue does not exist."""
    url_in_region(client_region(sqs), url, queues_in=queues_in)


def url_in_region(region: str | None, url: str, *, queues_in: str) -> None:
    """:func:`check_url_region` for a client of ``region`` (None: no region to compare with)."""
    if (own := url_region(url)) is not None and region is not None and own != region:
        raise ConfigError(
            f"queue {url} is in {own}, the worker in {region}: set "
            f"LAMBDA_DESTINATIONS_REGION={own}, or run one worker per region "
            f"(or fix {queues_in})"
        )


async def queue_url(sqs: Any, url_or_name: str, *, queues_in: str) -> str:
    """A URL as given, or the URL of a queue name or ARN (ConfigError when it does not exist,
    or is of another region than the client's)."""
    if "://" in url_or_name:
        check_url_region(sqs, url_or_name, queues_in=queues_in)
        return url_or_name
    lookup = queue_lookup(sqs, url_or_name, queues_in=queues_in)
    try:
        response = await sqs.get_queue_url(**lookup)
    except ClientError as exc:
        if is_missing_queue(exc):
            raise ConfigError(
                f"queue {url_or_name!r} does not exist: fix {queues_in} "
                "or create the queue (and check the region)"
            ) from None
        raise
    url: str = response["QueueUrl"]
    return url


@contextlib.contextmanager
def refusal_naming(what: str) -> Iterator[None]:
    """A refusal of the credentials (AccessDenied) as one line naming ``what`` it was refused
    on, which AWS's message may not (SQS's says "Access to the resource https://sqs… is
    denied"), the action and the fix: a ConfigError."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) not in DENIED_CODES:
            raise
        operation = exc.operation_name
        raise ConfigError(
            f"{operation} on {what} was refused ({first_line(exc)}): check the AWS credentials "
            f"and that they are allowed {iam_action(operation) or operation} on it"
        ) from None


async def describe_queue(sqs: Any, url_or_name: str, *, queues_in: str) -> QueueInfo:
    """Resolve a configured queue and read what the worker needs of its attributes."""
    with refusal_naming(url_or_name):
        url = await queue_url(sqs, url_or_name, queues_in=queues_in)
        try:
            response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        except ClientError as exc:
            if is_missing_queue(exc):
                raise ConfigError(
                    f"queue {url} does not exist: fix {queues_in} or create the queue"
                ) from None
            raise
    attributes: dict[str, str] = response.get("Attributes", {})
    policy = attributes.get("RedrivePolicy")
    with refusal_naming(f"{policy_target(policy)} (the DLQ of {url})"):
        dlq_arn, dlq_url, max_receive_count = await dead_letter_target(sqs, policy)
    return QueueInfo(
        url=url,
        name=queue_name(url),
        arn=attributes.get("QueueArn"),
        visibility_timeout=int(attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY)),
        fifo=attributes.get("FifoQueue", "false").lower() == "true",
        dlq_url=dlq_url,
        max_receive_count=max_receive_count,
        dlq_arn=dlq_arn,
    )


def policy_target(policy_text: str | None) -> str | None:
    """The DLQ ARN a RedrivePolicy names (None: no policy, or one without a target)."""
    if not policy_text:
        return None
    target = json.loads(policy_text).get("deadLetterTargetArn")
    return str(target) if target else None


def policy_max_receive_count(policy_text: str | None) -> int | None:
    """The maxReceiveCount a RedrivePolicy sets (None: no policy, or one without a count)."""
    if not policy_text:
        return None
    return int(json.loads(policy_text).get("maxReceiveCount", 0)) or None


async def dead_letter_target(
    sqs: Any, policy_text: str | None
) -> tuple[str | None, str | None, int | None]:
    """(DLQ ARN, DLQ URL, maxReceiveCount) of a queue's RedrivePolicy; the URL is None when
    the DLQ does not exist, all three when there is no policy."""
    if not policy_text:
        return None, None, None
    max_receive_count = policy_max_receive_count(policy_text)
    target = policy_target(policy_text)
    if not target:
        return None, None, max_receive_count
    _region, account, name = parse_arn(target)
    try:
        found = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    except ClientError as exc:
        if not is_missing_queue(exc):
            raise
        return target, None, max_receive_count
    return target, str(found["QueueUrl"]), max_receive_count


async def redrive_policy(sqs: Any, url: str) -> str | None:
    """The queue's RedrivePolicy as SQS has it now (None: it has none)."""
    response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    policy: str | None = response.get("Attributes", {}).get("RedrivePolicy")
    return policy


def sendable_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute in the form SendMessage accepts: as ReceiveMessage returned it, or as
    the store keeps it (:func:`storable_attributes`, a Binary value as base64 text)."""
    out: dict[str, Any] = {"DataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["StringValue"] = value["StringValue"]
    elif "BinaryValue" in value:
        binary = value["BinaryValue"]
        # Text here is the store's base64: botocore would encode the text itself, sending the
        # base64 of the base64 instead of the bytes received.
        out["BinaryValue"] = base64.b64decode(binary) if isinstance(binary, str) else binary
    else:
        out["StringValue"] = ""
    return out


def storable_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Received message attributes as JSON can hold them: each Binary value (bytes) as base64
    text, the spelling of SQS's own JSON API. :func:`sendable_attribute` turns it back."""
    return {
        name: {field: _storable(item) for field, item in value.items()}
        if isinstance(value, dict)
        else value
        for name, value in attributes.items()
    }


def _storable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):  # BinaryListValues: reserved by SQS, never filled yet
        return [_storable(item) for item in value]
    return value
