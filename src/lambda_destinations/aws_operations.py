"""Every AWS operation the code calls, who calls it, on what, and the IAM action it needs.

This list is the source of the deploy templates' policies: the ECS task role (CloudFormation),
the Terraform module's policy and the IRSA role of the Kubernetes manifests grant exactly the
actions of the ``WORKER`` operations, on exactly the resources named here, and nothing else.
A test scans the package for client calls and fails when a call is missing from this list (or
the list names a call the code no longer makes), so a new call cannot ship without its
permission; another test reads the templates and checks them against it.

``Scope``:

- ``WORKER``: the long-running worker and its handlers (``lambda-destinations run``): what the
  deployed task or pod needs.
- ``OPERATOR``: the operator commands (``doctor``, ``dlq``, ``replay``): run by people or jobs
  with their own credentials, never granted to the worker.
- ``DEV``: only against the embedded local endpoint of ``lambda-destinations dev``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.StrEnum):
    WORKER = "worker"
    OPERATOR = "operator"
    DEV = "dev"


class Target(enum.StrEnum):
    """The resources an action is granted on, in the templates' own terms."""

    QUEUE = "queue"  # the success and failure destination queues the worker polls
    DLQ = "dlq"  # their dead-letter queues
    FUNCTION = "function"  # the Lambda functions whose destinations are wired (any qualifier)
    SMS = "sms"  # SNS Publish to a phone number: IAM has no resource for it, so "*"
    EMAIL_IDENTITY = "email-identity"  # SES identities (and configuration sets) mail is sent as
    TOPIC = "topic"  # SNS topics between a function and a queue
    KMS_KEY = "kms-key"  # the KMS keys of the account's own that encrypt queues (SSE-KMS)
    ACCOUNT = "account"  # calls that name no resource
    ECS_TASK = "ecs-task"  # the ECS service's own tasks (scale-in protection)
    ACCOUNT_ROLE = "account-role"  # the roles of the accounts table, in the functions' accounts
    LOG_GROUP = "log-group"  # the functions' CloudWatch Logs log groups (/aws/lambda/NAME)
    # S3 buckets that are on-failure destinations: the worker reads the records Lambda writes
    # under their aws/lambda/ prefix (arn:aws:s3:::BUCKET/aws/lambda/*), doctor their
    # notifications (arn:aws:s3:::BUCKET)
    RECORD_BUCKET = "record-bucket"


@dataclass(frozen=True)
class AwsOperation:
    """One API operation: botocore's service and operation names, and what it needs."""

    service: str  # botocore's service name: sqs, sns, sesv2, lambda, sts
    operation: str  # the API's name, as botocore's service model spells it
    action: str | None  # the IAM action it needs (None: no permission is needed)
    scope: Scope
    targets: tuple[Target, ...]
    reason: str
    # "sdk": the package calls it through botocore; "ecs-agent": the ECS agent calls it with
    # the task role's credentials when the worker asks it to (worker/protection.py);
    # "assume-role": botocore's AssumeRole credential fetcher calls it with our own
    # credentials, before the first call in another account (aws.py, _account_session).
    via: str = "sdk"
    # The actions it needs besides ``action`` when a parameter says so: S3 checks
    # s3:GetObjectVersion, not s3:GetObject, for a GetObject that names a VersionId.
    also: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[str, ...]:
        """Every IAM action it may need: ``action`` and ``also``."""
        return (self.action, *self.also) if self.action is not None else self.also


_W, _O, _D = Scope.WORKER, Scope.OPERATOR, Scope.DEV
_Q, _DLQ = Target.QUEUE, Target.DLQ

OPERATIONS: tuple[AwsOperation, ...] = (
    # -- the worker and its handlers ----------------------------------------------------------
    AwsOperation(
        "kms",
        "DescribeKey",
        "kms:DescribeKey",
        _O,
        (Target.KMS_KEY,),
        "`doctor` reads the state of the KMS key of an SSE-KMS queue (disabled, scheduled for "
        "deletion)",
    ),
    AwsOperation(
        "kms",
        "GenerateDataKey",
        "kms:GenerateDataKey",
        _O,
        (Target.KMS_KEY,),
        "`doctor` makes a data key with the KMS key of an SSE-KMS DLQ, as SQS does when the "
        "worker sends it a quarantined message's copy (nothing is encrypted with it)",
    ),
    AwsOperation(
        "kms",
        "Decrypt",
        "kms:Decrypt",
        _O,
        (Target.KMS_KEY,),
        "`doctor` decrypts the data key it made with the KMS key of an SSE-KMS DLQ",
    ),
    AwsOperation(
        "sqs",
        "GetQueueUrl",
        "sqs:GetQueueUrl",
        _W,
        (_Q, _DLQ),
        "resolve the configured queue names, and the DLQ named by each redrive policy",
    ),
    AwsOperation(
        "sqs",
        "GetQueueAttributes",
        "sqs:GetQueueAttributes",
        _W,
        (_Q, _DLQ),
        "read each queue's visibility timeout and redrive policy at start, and the backlog "
        "(and the redrive policy again, to follow a new DLQ) for the metrics",
    ),
    AwsOperation(
        "sqs", "ReceiveMessage", "sqs:ReceiveMessage", _W, (_Q,), "long-poll the destination queues"
    ),
    AwsOperation(
        "sqs",
        "DeleteMessageBatch",
        "sqs:DeleteMessage",
        _W,
        (_Q,),
        "acknowledge handled (and quarantined) messages, ten at a time",
    ),
    AwsOperation(
        "sqs",
        "ChangeMessageVisibilityBatch",
        "sqs:ChangeMessageVisibility",
        _W,
        (_Q,),
        "retry with backoff, the visibility heartbeat, and release at shutdown",
    ),
    AwsOperation(
        "sqs",
        "SendMessage",
        "sqs:SendMessage",
        _W,
        (_DLQ,),
        "quarantine: send a message that can never succeed to its queue's DLQ with the reason",
    ),
    AwsOperation(
        "s3",
        "GetObject",
        "s3:GetObject",
        _W,
        (Target.RECORD_BUCKET,),
        "read a record Lambda wrote to an S3 on-failure destination, when the bucket's "
        "notification arrives (s3:GetObjectVersion: the version its notice names, in a "
        "versioned bucket)",
        also=("s3:GetObjectVersion",),
    ),
    AwsOperation(
        "sns",
        "Publish",
        "sns:Publish",
        _W,
        (Target.SMS,),
        "the sms handler texts phone numbers (IAM cannot name a phone number, hence *)",
    ),
    AwsOperation(
        "sesv2",
        "SendEmail",
        "ses:SendEmail",
        _W,
        (Target.EMAIL_IDENTITY,),
        "the email handler (transport ses) sends as a verified identity",
    ),
    AwsOperation(
        "lambda",
        "Invoke",
        "lambda:InvokeFunction",
        _W,
        (Target.FUNCTION,),
        "the replay handler (and `replay`) invoke a failed function again, asynchronously",
    ),
    AwsOperation(
        "sts",
        "AssumeRole",
        "sts:AssumeRole",
        _W,
        (Target.ACCOUNT_ROLE,),
        "the replay handler invokes a function of another account with the role the accounts "
        "table names for it",
        via="assume-role",
    ),
    AwsOperation(
        "sts",
        "GetCallerIdentity",
        None,
        _W,
        (Target.ACCOUNT,),
        "an Invoke of another account's function refused: say whose credentials were used (STS "
        "needs no permission for it)",
    ),
    AwsOperation(
        "ecs",
        "UpdateTaskProtection",
        "ecs:UpdateTaskProtection",
        _W,
        (Target.ECS_TASK,),
        "scale-in protection while messages are in flight: the worker asks the ECS agent "
        "($ECS_AGENT_URI), which calls ECS with the task role",
        via="ecs-agent",
    ),
    # -- operator commands --------------------------------------------------------------------
    AwsOperation(
        "sqs",
        "ListDeadLetterSourceQueues",
        "sqs:ListDeadLetterSourceQueues",
        _O,
        (_DLQ,),
        "`dlq redrive` finds the queues whose redrive policy names a DLQ",
    ),
    AwsOperation(
        "sqs",
        "SendMessageBatch",
        "sqs:SendMessage",
        _O,
        (_Q, _DLQ),
        "`dlq redrive` moves messages back when SQS's move task cannot; `doctor` sends a batch "
        "of no message to each DLQ, which SQS refuses once the credentials may send",
    ),
    AwsOperation(
        "sqs",
        "StartMessageMoveTask",
        "sqs:StartMessageMoveTask",
        _O,
        (_DLQ,),
        "`dlq redrive` lets SQS move the messages where it can",
    ),
    AwsOperation(
        "sqs",
        "ListMessageMoveTasks",
        "sqs:ListMessageMoveTasks",
        _O,
        (_DLQ,),
        "`dlq redrive` follows the move task's progress; `--dry-run` asks whether there is one",
    ),
    AwsOperation("sqs", "PurgeQueue", "sqs:PurgeQueue", _O, (_DLQ,), "`dlq purge`"),
    AwsOperation(
        "sqs",
        "ListQueues",
        "sqs:ListQueues",
        _O,
        (Target.ACCOUNT,),
        "`dlq peek`, `dlq redrive`, `dlq purge` and `simulate` name the queue a mistyped one may "
        "be (without it, no name is suggested)",
    ),
    AwsOperation(
        "sts",
        "GetCallerIdentity",
        None,
        _O,
        (Target.ACCOUNT,),
        "`doctor` shows whose credentials are used, and whose a role of the accounts table gives; "
        "`failures logs` says so when a function of another account has no role (STS needs no "
        "permission for it)",
    ),
    AwsOperation(
        "sts",
        "AssumeRole",
        "sts:AssumeRole",
        _O,
        (Target.ACCOUNT_ROLE,),
        "`replay` and `dlq redrive --reinvoke` invoke a function of another account with the "
        "role the accounts table names for it, and `failures logs` reads its logs with it; "
        "`doctor` assumes each such role",
        via="assume-role",
    ),
    AwsOperation(
        "lambda",
        "ListFunctions",
        "lambda:ListFunctions",
        _O,
        (Target.ACCOUNT,),
        "`doctor --function` finds the functions matching a glob",
    ),
    AwsOperation(
        "lambda",
        "ListFunctionEventInvokeConfigs",
        "lambda:ListFunctionEventInvokeConfigs",
        _O,
        (Target.FUNCTION,),
        "`doctor` checks each function's destinations",
    ),
    AwsOperation(
        "lambda",
        "ListEventSourceMappings",
        "lambda:ListEventSourceMappings",
        _O,
        (Target.ACCOUNT,),  # IAM scopes it to no resource: it lists the region's mappings
        "`doctor` checks the on-failure destination of each function's event-source mappings "
        "(Kinesis, DynamoDB Streams, Kafka)",
    ),
    AwsOperation(
        "sesv2",
        "GetEmailIdentity",
        "ses:GetEmailIdentity",
        _O,
        (Target.EMAIL_IDENTITY,),
        "`doctor` checks that an email handler's sender (and sandbox recipients) are verified",
    ),
    AwsOperation(
        "sesv2",
        "GetConfigurationSet",
        "ses:GetConfigurationSet",
        _O,
        (Target.EMAIL_IDENTITY,),
        "`doctor` checks that the configuration set an email handler names exists",
    ),
    AwsOperation(
        "sesv2",
        "GetAccount",
        "ses:GetAccount",
        _O,
        (Target.ACCOUNT,),
        "`doctor` reads whether SES is in the sandbox",
    ),
    AwsOperation(
        "sns",
        "GetSMSAttributes",
        "sns:GetSMSAttributes",
        _O,
        (Target.ACCOUNT,),
        "`doctor` reads the account's SMS settings (spend limit, default type)",
    ),
    AwsOperation(
        "sns",
        "CheckIfPhoneNumberIsOptedOut",
        "sns:CheckIfPhoneNumberIsOptedOut",
        _O,
        (Target.SMS,),
        "`doctor` checks that no number of an sms handler opted out",
    ),
    AwsOperation(
        "s3",
        "GetBucketNotificationConfiguration",
        "s3:GetBucketNotificationConfiguration",
        _O,
        (Target.RECORD_BUCKET,),
        "`doctor` follows an S3 on-failure destination to the queue its event notifications reach",
    ),
    AwsOperation(
        "sns",
        "ListSubscriptionsByTopic",
        "sns:ListSubscriptionsByTopic",
        _O,
        (Target.TOPIC,),
        "`doctor` follows a destination topic to the queues subscribed to it",
    ),
    AwsOperation(
        "sqs",
        "GetQueueUrl",
        "sqs:GetQueueUrl",
        _O,
        (_Q, _DLQ),
        "`doctor` and `dlq` resolve a queue given by name (`dlq redrive` its source queues too)",
    ),
    AwsOperation(
        "sqs",
        "GetQueueAttributes",
        "sqs:GetQueueAttributes",
        _O,
        (_Q, _DLQ),
        "`doctor` checks each queue; `dlq` reads a DLQ's depth and ARN (`dlq redrive` its "
        "source queue's too)",
    ),
    AwsOperation(
        "sqs",
        "ReceiveMessage",
        "sqs:ReceiveMessage",
        _O,
        (_DLQ,),
        "`dlq peek` and `dlq redrive` read dead-lettered messages",
    ),
    AwsOperation(
        "sqs",
        "ChangeMessageVisibilityBatch",
        "sqs:ChangeMessageVisibility",
        _O,
        (_Q, _DLQ),
        "`dlq peek` releases what it looked at, `dlq redrive` what it does not move; `doctor` "
        "tries it on each queue with a receipt handle no message has",
    ),
    AwsOperation(
        "sqs",
        "DeleteMessageBatch",
        "sqs:DeleteMessage",
        _O,
        (_Q, _DLQ),
        "`dlq redrive` deletes from the DLQ what it moved or re-invoked; `doctor` tries it on "
        "each queue with a receipt handle no message has",
    ),
    AwsOperation(
        "sqs",
        "SendMessage",
        "sqs:SendMessage",
        _O,
        (_Q,),
        "`dlq redrive` sends a message again alone when its batch entry failed; "
        "`quarantine resend` sends a quarantined message back to its queue",
    ),
    AwsOperation(
        "lambda",
        "Invoke",
        "lambda:InvokeFunction",
        _O,
        (Target.FUNCTION,),
        "`replay` and `dlq redrive --reinvoke` invoke functions again",
    ),
    AwsOperation(
        "s3",
        "GetObject",
        "s3:GetObject",
        _O,
        (Target.RECORD_BUCKET,),
        "`dlq redrive --reinvoke` reads the record Lambda wrote to an S3 on-failure destination "
        "that a dead-lettered notice names",
        also=("s3:GetObjectVersion",),
    ),
    AwsOperation(
        "lambda",
        "GetFunctionConfiguration",
        "lambda:GetFunctionConfiguration",
        _O,
        (Target.FUNCTION,),
        "`failures logs` reads which log group a function writes to (its LoggingConfig)",
    ),
    AwsOperation(
        "logs",
        "FilterLogEvents",
        "logs:FilterLogEvents",
        _O,
        (Target.LOG_GROUP,),
        "`failures logs` reads the lines of a failed invocation from its function's log group",
    ),
    AwsOperation(
        "logs",
        "DescribeLogGroups",
        "logs:DescribeLogGroups",
        _O,
        (Target.LOG_GROUP,),
        "`failures logs` reads a log group's retention when it holds no line of the invocation",
    ),
    # -- dev only (the embedded local endpoint) ----------------------------------------------
    AwsOperation(
        "sqs", "CreateQueue", "sqs:CreateQueue", _D, (_Q, _DLQ), "`dev` creates its local queues"
    ),
    AwsOperation(
        "iam",
        "CreateRole",
        "iam:CreateRole",
        _D,
        (Target.ACCOUNT,),
        "`dev` creates the role its simulated functions name",
    ),
    AwsOperation(
        "lambda",
        "CreateFunction",
        "lambda:CreateFunction",
        _D,
        (Target.FUNCTION,),
        "`dev` creates its simulated functions",
    ),
    AwsOperation(
        "lambda",
        "PutFunctionEventInvokeConfig",
        "lambda:PutFunctionEventInvokeConfig",
        _D,
        (Target.FUNCTION,),
        "`dev` points its simulated functions' destinations at its queues",
    ),
    *(
        AwsOperation(
            "logs",
            action,
            f"logs:{action}",
            _D,
            (Target.LOG_GROUP,),
            "`dev`'s simulated functions write their failed attempts' lines, as Lambda does",
        )
        for action in ("CreateLogGroup", "CreateLogStream", "PutLogEvents")
    ),
    AwsOperation(
        "s3",
        "CreateBucket",
        "s3:CreateBucket",
        _D,
        (Target.RECORD_BUCKET,),
        "`dev` creates its bucket, an on-failure destination too",
    ),
    AwsOperation(
        "s3",
        "PutBucketNotificationConfiguration",
        "s3:PutBucketNotification",  # IAM's name for it
        _D,
        (Target.RECORD_BUCKET,),
        "`dev` has its bucket tell the failure queue of each record written under aws/lambda/",
    ),
    AwsOperation(
        "s3",
        "PutObject",
        "s3:PutObject",
        _O,
        (Target.RECORD_BUCKET,),
        "`dev --simulate` and `simulate --bucket` write some failure records to a bucket, as "
        "Lambda does",
    ),
    AwsOperation(
        "s3",
        "HeadBucket",
        "s3:ListBucket",
        _O,
        (Target.RECORD_BUCKET,),
        "`simulate --bucket` says a bucket that does not exist before it sends anything (a "
        "refused HeadBucket goes on to PutObject)",
    ),
)


def operations(scope: Scope | None = None) -> tuple[AwsOperation, ...]:
    """The listed operations, all or of one scope."""
    return tuple(op for op in OPERATIONS if scope is None or op.scope is scope)


def iam_action(operation: str) -> str | None:
    """The IAM action an operation (as botocore names it in a ClientError) needs, when the
    listed operations of that name agree on one: what a refusal's fix names."""
    actions = {op.action for op in OPERATIONS if op.operation == operation}
    return actions.pop() if len(actions) == 1 else None


def worker_actions() -> dict[str, frozenset[Target]]:
    """The IAM actions the deployed worker needs, each with the resources it needs them on."""
    actions: dict[str, set[Target]] = {}
    for op in operations(Scope.WORKER):
        for action in op.actions:
            actions.setdefault(action, set()).update(op.targets)
    return {action: frozenset(targets) for action, targets in actions.items()}


__all__ = [
    "OPERATIONS",
    "AwsOperation",
    "Scope",
    "Target",
    "iam_action",
    "operations",
    "worker_actions",
]
