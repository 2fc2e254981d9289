"""The fix a handler's AWS refusal carries into its reason, and a command's line, by the error's
code (the SES refusal that moto gives is driven end to end in test_email_handler.py; moto
enforces no permissions)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from lambda_destinations.cli._app import EXIT_CONFIG, EXIT_FAILED, describe_aws_error
from lambda_destinations.config import Settings
from lambda_destinations.console.views import problem_line
from lambda_destinations.retrying import aws_fix, describe_error, first_line


def refusal(code: str, operation: str, message: str = "refused") -> ClientError:
    """The error botocore raises for an AWS answer with ``code``, its retries (off) used up."""
    answer = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"MaxAttemptsReached": True, "RetryAttempts": 0},
    }
    # botocore's class for a code its model knows is a ClientError named after it
    return type(code, (ClientError,), {})(answer, operation)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "operation", "message", "fix"),
    [
        (
            "AuthorizationError",
            "Publish",
            "User is not authorized to perform: SNS:Publish",
            "check the worker's AWS credentials and that they are allowed sns:Publish",
        ),
        (
            "AccessDeniedException",
            "SendEmail",
            "not authorized to perform: ses:SendEmail",
            "check the worker's AWS credentials and that they are allowed ses:SendEmail",
        ),
        (
            "ResourceNotFoundException",
            "Invoke",
            "Function not found",
            "check the function's name (a version or alias too) and the region",
        ),
        (
            "SendingPausedException",
            "SendEmail",
            "sending is paused",
            "SES sending is suspended or paused for the account: see its status in SES",
        ),
        (  # an operation the package does not list: named as botocore names it
            "AccessDenied",
            "GetFunctionUrlConfig",
            "not authorized",
            "check the worker's AWS credentials and that they are allowed GetFunctionUrlConfig",
        ),
        ("MessageRejected", "SendEmail", "Message contains a virus", None),  # no fix of ours
        (  # the handler's configuration_set, which SES does not have: it said SES's words alone
            "NotFoundException",
            "SendEmail",
            "Configuration set <alerts> does not exist.",
            "create the configuration set in SES, in the worker's region, or set the handler's "
            "configuration_set to one that exists (or remove it)",
        ),
        (  # SNS's refusal of a number: a country it does not text, a region without SMS, the
            # SMS sandbox; it was no fix of ours, and the reason said only SNS's words
            "InvalidParameter",
            "Publish",
            "Invalid parameter: PhoneNumber Reason: +14*****2671 is not valid to publish to",
            "SNS does not text that number: check it in the handler's phone_numbers, that the "
            "worker's region sends SMS (not every region does), and, while the account is in "
            "the SNS SMS sandbox, that the number is verified there",
        ),
        (  # SNS's other code for a parameter it refuses (InvalidParameterValueException):
            # before, the reason said only SNS's words
            "ParameterValueInvalid",
            "Publish",
            "Invalid parameter: PhoneNumber Reason: +14*****2671 is not valid to publish to",
            "SNS does not text that number: check it in the handler's phone_numbers, that the "
            "worker's region sends SMS (not every region does), and, while the account is in "
            "the SNS SMS sandbox, that the number is verified there",
        ),
        ("InvalidParameter", "Publish", "Invalid parameter: Message too long", None),
        (  # a replay's Invoke of a function whose environment's key is scheduled for deletion:
            # Lambda's 502, before with no fix (nothing the caller's permissions change)
            "KMSInvalidStateException",
            "Invoke",
            "Lambda was unable to decrypt the environment variables because the KMS key used "
            "is in an invalid state for Decrypt.",
            "the function's KMS key (its environment variables') cannot be used in its state "
            "(pending deletion, or pending import): cancel its deletion (aws kms "
            "cancel-key-deletion) and enable it; once it is deleted, nothing it encrypted can "
            "be read again",
        ),
        (
            "KMSAccessDeniedException",
            "Invoke",
            "Lambda was unable to decrypt the environment variables because KMS access was denied.",
            "the function's KMS key (its environment variables') does not let the function's "
            "execution role use it: allow the function's execution role kms:Decrypt on the key "
            "(in the key's policy, or an IAM policy)",
        ),
        (  # a replay of a function in tenant isolation mode: AWS's words ask for a tenant id,
            # which nothing of ours can send
            "InvalidParameterValueException",
            "Invoke",
            "The invoked function is enabled with tenancy configuration. Add a valid tenant ID "
            "in your request and try again.",
            "the function isolates tenants and Lambda invokes it only with a tenant id, which "
            "lambda-destinations does not send: invoke it with the AWS CLI (aws lambda invoke "
            "--tenant-id ID --invocation-type Event)",
        ),
        (  # a payload over an asynchronous Invoke's limit (an edited one, say)
            "RequestEntityTooLargeException",
            "Invoke",
            "Request must be smaller than 1048576 bytes for the Invoke operation",
            "Lambda takes 1 MB at most for an asynchronous Invoke's payload: send a smaller one",
        ),
        (  # SQS's code by its JSON shape, as some answers have it
            "KmsNotFound",
            "SendMessage",
            "Invalid keyId alias/ld",
            "the queue's KMS key (its server-side encryption) does not exist (deleted, or in "
            "another region): set the queue's encryption to a key that exists, or to "
            "SQS-managed (SSE-SQS)",
        ),
    ],
)
def test_an_aws_refusal_carries_the_fix_its_code_says(
    code: str, operation: str, message: str, fix: str | None
) -> None:
    assert aws_fix(refusal(code, operation, message)) == fix


def test_no_fix_for_what_is_no_aws_answer() -> None:
    assert aws_fix(ValueError("not an AWS error")) is None


def test_botocore_s_retry_count_is_not_in_a_reason() -> None:
    # given: botocore's text, "(reached max retries: 0)" in it, which read as "never retried"
    exc = refusal("MessageRejected", "SendEmail", "Email address not verified")

    # then
    assert "(reached max retries: 0)" in str(exc)
    assert describe_error(exc) == (
        "MessageRejected: An error occurred (MessageRejected) when calling the SendEmail "
        "operation: Email address not verified"
    )


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("PurgeQueue", "sqs:PurgeQueue"),
        ("ReceiveMessage", "sqs:ReceiveMessage"),  # the worker's and dev's: one action
        ("Invoke", "lambda:InvokeFunction"),
        ("GetFunctionUrlConfig", "GetFunctionUrlConfig"),
    ],
)
def test_a_command_refused_by_aws_names_the_permission_to_grant(
    operation: str, action: str
) -> None:
    # given: AWS's refusal of a command's call (moto enforces no permissions)
    exc = refusal("AccessDenied", operation, "User: arn:aws:iam::1:user/ops is not authorized")

    # when
    described = describe_aws_error(exc)

    # then: one line that names the IAM action, exit 3 (the configuration)
    assert described == (
        f"{operation} was refused (AccessDenied: User: arn:aws:iam::1:user/ops is not "
        f"authorized): check the AWS credentials and that they are allowed {action}",
        EXIT_CONFIG,
    )


def test_a_command_refused_by_a_queue_s_kms_key_says_what_to_do_with_the_key() -> None:
    # given: `dlq peek` of a DLQ whose key is disabled (moto's SQS encrypts nothing)
    exc = refusal("KMS.DisabledException", "ReceiveMessage", "(Service: AWSKMS) DisabledException")

    # when
    described = describe_aws_error(exc)

    # then: the key and the fix, exit 1 (a failed call); before, only SQS's words
    assert described == (
        "ReceiveMessage failed: KMS.DisabledException: (Service: AWSKMS) DisabledException: "
        "the queue's KMS key (its server-side encryption) is disabled: enable it in KMS (aws "
        "kms enable-key)",
        EXIT_FAILED,
    )


def param_validation_error(endpoint_url: str, **params: object) -> BaseException:
    """The error botocore raises, before sending anything, for FilterLogEvents ``params``."""
    import boto3

    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint_url)
    with pytest.raises(ParamValidationError) as raised:
        logs.filter_log_events(**params)
    return raised.value


def test_a_parameter_botocore_refuses_is_said_with_its_reasons(endpoint_url: str) -> None:
    # given: botocore's refusal, its reasons on the lines after "Parameter validation failed:"
    # (one of them quoting a value that holds a password)
    exc = param_validation_error(endpoint_url, logGroupName="", limit="postgresql://u:pw1234@h/d")

    # when: a command's line, and the console's
    described = describe_aws_error(exc)
    shown = problem_line(exc, Settings())

    # then: one line with each reason (before: the bare "Parameter validation failed:"), redacted
    assert described is not None
    line, code = described
    assert code == EXIT_FAILED
    assert line.startswith("Parameter validation failed: Invalid length for parameter ")
    assert "logGroupName, value: 0, valid min length: 1; Invalid type for parameter limit" in line
    assert "\n" not in line
    assert "pw1234" not in line
    assert shown == f"ParamValidationError: {line}"


def test_the_reasons_of_a_refused_parameter_are_bounded(endpoint_url: str) -> None:
    exc = param_validation_error(endpoint_url, logGroupName="", limit="x" * 1000)

    line = first_line(exc)

    assert len(line) == 300
    assert line.startswith("Parameter validation failed: Invalid length for parameter ")
