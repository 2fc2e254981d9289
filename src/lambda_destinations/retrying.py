"""Which errors are worth retrying, and the tenacity policies built from that."""

from __future__ import annotations

import asyncio
import html
import math
import random
import re
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoAuthTokenError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)
from botocore.parsers import ResponseParserError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from lambda_destinations._proxy import proxy_named, proxy_problem
from lambda_destinations.aws_operations import iam_action
from lambda_destinations.errors import PermanentError, TransientError
from lambda_destinations.redact import exception_text, redact

Kind = Literal["transient", "permanent", "unknown"]
T = TypeVar("T")
INITIAL_WAIT = 0.2  # seconds before the second in-process try

# Error codes AWS services use for throttling and momentary unavailability.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "Throttled",  # SNS (its ThrottledException's code, HTTP 429)
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "KMSThrottlingException",
        "KMSThrottling",  # SNS: the KMS key of an encrypted topic
        "KMS.ThrottlingException",  # SQS: the KMS key of an SSE-KMS queue (its Query code)
        "KmsThrottled",  # SQS: the same, by its JSON shape
        "OverLimit",  # SQS: a receive while the queue has its most messages in flight
        "EC2ThrottledException",
        "ResourceConflictException",  # Lambda: function is being updated
        "ResourceNotReadyException",
    }
)

# Error codes that refuse the request's credentials themselves: expired (a role's temporary
# credentials, a clock that is off), unknown, or signed with another secret. Nothing in the
# message causes them and every call fails alike until the credentials are refreshed or fixed:
# transient, so a message is retried, never quarantined as if it were bad.
CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidAccessKeyId",
    }
)

# Error codes that mean the credentials are missing, wrong or lack a permission.
DENIED_CODES = CREDENTIAL_CODES | {"AccessDenied", "AccessDeniedException", "AuthorizationError"}

# How an endpoint (an emulator, mostly) says it has no such operation, besides HTTP 501.
NOT_IMPLEMENTED_CODES = frozenset(
    {"NotImplemented", "NotImplementedException", "InvalidAction", "UnknownOperationException"}
)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    EndpointConnectionError,
    ProxyConnectionError,  # the egress proxy refused the tunnel, or could not be reached
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    HTTPClientError,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
)


# Raised before a request is sent, for want of what signs or addresses it (credentials, a
# profile, a region): nothing reached the service, and every other request would fail alike.
SETUP_ERRORS: tuple[type[BaseException], ...] = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    NoAuthTokenError,
    TokenRetrievalError,
    SSOError,
    ProfileNotFound,
    NoRegionError,
)
# Raised before a request is sent: nothing reached the service.
NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (*SETUP_ERRORS, ParamValidationError)


# An AWS error in the Query protocol's XML answering a JSON request (SQS, Lambda, SES v2): moto
# refuses so what IAM does not allow. botocore cannot read it: it names the error by its HTTP
# status and keeps the whole XML as the message.
_XML_ERROR = re.compile(
    r"<Code>\s*([^<]+?)\s*</Code>(?:\s*<Message>\s*(.*?)\s*</Message>)?", re.DOTALL
)


def _xml_error(exc: BaseException) -> tuple[str, str] | None:
    """The code and message of an AWS error botocore left unread in XML, else None."""
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if str(error.get("Code")) != str(status):
        return None
    found = _XML_ERROR.search(str(error.get("Message") or ""))
    return (found[1], html.unescape(found[2] or "")) if found else None


def code_and_message(exc: ClientError) -> tuple[object, str]:
    """A ClientError's code and message, read from the XML botocore could not read (moto's
    refusals of a JSON-protocol call) too."""
    if (found := _xml_error(exc)) is not None:
        return found
    error = exc.response.get("Error", {})
    return error.get("Code"), str(error.get("Message") or "")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError, else None."""
    if isinstance(exc, ClientError):
        code = code_and_message(exc)[0]
        return str(code) if code is not None else None
    return None


# An HTML page where an AWS answer was expected (a proxy's error page, a web server at the
# endpoint URL): botocore puts the whole page in the error's text.
_HTML_PAGE = re.compile(r"<!doctype html|<html", re.IGNORECASE)
_HTML_TITLE = re.compile(r"<title>\s*(.*?)\s*</title>", re.IGNORECASE | re.DOTALL)
# What a line about such an answer asks, where it cannot name the setting to check.
_ASK_ENDPOINT = "(is the endpoint URL an AWS endpoint, or a proxy's error page?)"
_NO_AWS_ERROR = "with no AWS error in it"


def said_not_aws(answer: str, *, by: str | None = None) -> str:
    """How every line says an answer no AWS service gives (:func:`not_aws_answer`'s ``answer``):
    ``404 with no AWS error in it, not an AWS answer``, after ``{by} answered`` when given."""
    text = f"{answer}, not an AWS answer"
    return f"{by} answered {text}" if by else text


# Characters of an error's text in a log line or a reason: a handler's error can carry
# megabytes (a payload in its message), which every retry would log again.
DESCRIBED_MAX = 2000


# botocore's count of its own retries, in every ClientError's text: always 0 here (its retries
# are off; ours are counted by the worker), and read as "never retried" in a reason.
_BOTOCORE_RETRIES = re.compile(r" \(reached max retries: \d+\)")


def describe_error(exc: BaseException) -> str:
    """One line for a log or a stored reason: the type, the AWS error code, the text, redacted,
    cut at DESCRIBED_MAX characters."""
    code = error_code(exc)
    if isinstance(exc, AccountRefusal):  # its message is ours, whole
        return redact(f"{exc.operation_name} refused ({code}): {code_and_message(exc)[1]}")
    answer = not_aws_answer(exc)
    # A parser error's text: the parser's complaint, then the body (never None's answer).
    if isinstance(exc, ResponseParserError) and answer is not None:
        text = f"{said_not_aws(answer, by='the endpoint')} {_ASK_ENDPOINT}"
    else:
        text = _without_html(text_of(exc) or type(exc).__name__)
        if isinstance(exc, ClientError) and (found := _xml_error(exc)) is not None:
            # as botocore words an error it read
            text = f"An error occurred ({found[0]}) when calling the {exc.operation_name} "
            text += f"operation: {found[1]}"
        if answer is not None and answer.endswith(_NO_AWS_ERROR):
            text = f"{text.rstrip()} {said_not_aws(answer)} {_ASK_ENDPOINT}"
    if isinstance(exc, ClientError):
        text = _BOTOCORE_RETRIES.sub("", text, count=1)
    if code and code not in text:
        text = f"{code}: {text}"
    text = redact(text)  # errors quote recipients and URLs; before the cut, which could split one
    if len(text) > DESCRIBED_MAX:
        text = f"{text[:DESCRIBED_MAX]}… ({len(text):,} characters)"
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


WORKER_CREDENTIALS = "the worker's AWS credentials"


class AccountRefusal(ClientError):  # type: ignore[misc]  # botocore is untyped
    """AWS's refusal of a call concerning another account than the credentials' (a function
    there, the role set to act there), restated: its message says which accounts, ``fix``
    what to set. Still the error AWS answered, with its code and operation: nothing was done,
    and it is classified as AWS's own. Raised while refreshing credentials (a role's that
    cannot be assumed), botocore's warning of it is left out: the failed call's line says it
    (``said_by_the_call``, logs.py)."""

    said_by_the_call = True

    def __init__(self, refused: ClientError, problem: str, fix: str) -> None:
        error = {**refused.response.get("Error", {}), "Code": error_code(refused)}
        super().__init__(
            {**refused.response, "Error": {**error, "Message": problem}}, refused.operation_name
        )
        self.fix = fix


class RoleNotAssumed(EndpointConnectionError):  # type: ignore[misc]  # botocore is untyped
    """STS did not answer the AssumeRole of ``role_arn``, the role of ``accounts.<account>``
    (unreachable, cut off, timed out): the call that needed the role's credentials (an Invoke)
    was never sent. A connection error: nothing is in doubt, and another try may pass.
    botocore's warning of the failed refresh is left out: the call's line says it."""

    fmt = (
        "cannot assume {role_arn}, the role of accounts.{account}: STS did not answer "
        "({error}); nothing was sent with its credentials"
    )
    said_by_the_call = True


def denied_fix(
    operation: str, credentials: str, on: str | None, *, action: str | None = None
) -> str:
    """What to do about a permission ``credentials`` lack for ``operation`` (on ``on``):
    ``action`` when AWS checked another than the operation's own (s3:GetObjectVersion)."""
    where = f" on {on}" if on else ""
    action = action or iam_action(operation) or operation
    return f"check {credentials} and that they are allowed {action}{where}"


def aws_fix(
    exc: BaseException,
    *,
    credentials: str = WORKER_CREDENTIALS,
    on: str | None = None,
    last_try: bool = False,
    then: str | None = None,
) -> str | None:
    """What to do about an AWS error a handler's call got (an SES, SNS or Lambda refusal), when
    its code says; None when it does not. A refusal names ``credentials``, whose they are, and
    the resource the call was ``on`` when given (AWS's message may not). ``last_try``: the
    worker gave the call up, and nothing tries it again; ``then``, what the operator runs once
    it can pass (None: the text the fix goes into says it, as a quarantine's reason does)."""
    if not isinstance(exc, ClientError):
        return None
    if isinstance(exc, AccountRefusal):
        return exc.fix
    code = error_code(exc)
    operation = exc.operation_name or "the call"
    if code in CREDENTIAL_CODES:
        return _credentials_fix(credentials, last_try=last_try, then=then)
    if code in DENIED_CODES:
        return denied_fix(operation, credentials, on)
    if (kms := kms_fix(code, operation, credentials)) is not None:
        return kms
    message = str(exc.response.get("Error", {}).get("Message") or "")
    if (ses := _ses_fix(code, message)) is not None:
        return ses
    # SNS's codes for a parameter it refuses: ParameterValueInvalid is its model's code for
    # InvalidParameterValueException (SQS's spelling, InvalidParameterValue, kept for emulators)
    refused = operation == "Publish" and code in _SNS_REFUSED_PARAMETER
    if refused and "phone" in message.lower():  # "… PhoneNumber Reason: … is not valid to …"
        return (
            "SNS does not text that number: check it in the handler's phone_numbers, that the "
            "worker's region sends SMS (not every region does), and, while the account is in "
            "the SNS SMS sandbox, that the number is verified there"
        )
    if operation == "Invoke" and (invoke := _invoke_fix(code, message)) is not None:
        return invoke
    if code == "ResourceNotFoundException" and operation == "Invoke":
        return not_found_fix(exc)
    if quota_spent(exc):
        return _quota_fix(last_try=last_try, then=then)
    if code == "OverLimit" and operation == "ReceiveMessage":
        return (
            "the queue holds SQS's most messages in flight (120,000 for a standard queue): "
            "receiving resumes by itself as they are deleted or their visibility timeout ends; "
            "look for a consumer of the queue that receives and does not delete"
        )
    if code in TRANSIENT_CODES and _THROTTLED.search(str(code)):
        return _throttled_fix(operation, credentials, last_try=last_try, then=then)
    return None


_SNS_REFUSED_PARAMETER = frozenset(
    {"InvalidParameter", "ParameterValueInvalid", "InvalidParameterValue"}
)


def _last_try(fix: str, then: str | None) -> str:
    """``fix``, said when nothing tries a call again, and ``then``, what the operator runs
    once it can pass, when given (see :func:`aws_fix`)."""
    return f"{fix}, {then}" if then else fix


def _quota_fix(*, last_try: bool, then: str | None) -> str:
    """What to do when SES's 24-hour sending quota is spent: the worker tries again every
    ``retry_max``, until the message's last receive."""
    if last_try:
        return _last_try(
            "the account's 24-hour SES sending quota is spent: nothing tries it again; the "
            "quota frees by itself within a day, or ask AWS to raise it (Service Quotas, "
            "'Sending quota')",
            then and f"then {then}",
        )
    return (
        "the account's 24-hour SES sending quota is spent: sending resumes by itself as the "
        "quota frees (the message is tried again every retry_max meanwhile); to send more a "
        "day, ask AWS to raise it (Service Quotas, 'Sending quota')"
    )


def _credentials_fix(credentials: str, *, last_try: bool = False, then: str | None = None) -> str:
    """What to do when AWS did not take ``credentials``: the worker tries the call again by
    itself, until its last try; an operator's command or the console tries nothing again."""
    if credentials != WORKER_CREDENTIALS:
        return keys_not_taken(credentials)
    if last_try:
        return _last_try(
            f"AWS did not take {credentials} (expired, unknown, or a clock that is off) on "
            "each try: nothing was done and nothing tries it again; a task or pod role's are "
            "refreshed by themselves, keys set by hand must be fixed",
            then and f"then {then}",
        )
    return (
        f"AWS did not take {credentials} (expired, unknown, or a clock that is off): the "
        "call is tried again; a task or pod role's are refreshed by themselves, keys set "
        "by hand must be fixed"
    )


def _throttled_fix(
    operation: str, credentials: str, *, last_try: bool = False, then: str | None = None
) -> str:
    """What to do about AWS throttling ``operation``: the worker tries it again by itself, until
    its last try; an operator's command or the console says so once its tries are spent."""
    if last_try and credentials == WORKER_CREDENTIALS:
        return _last_try(
            f"AWS throttled {operation} (a rate quota of the account, or of the function's "
            "concurrency) on each try: nothing was done and nothing tries it again; if it "
            "lasts, lower the worker's concurrency or ask AWS to raise the quota",
            then and f"and {then} later",
        )
    if credentials != WORKER_CREDENTIALS:
        return (
            f"AWS throttled {operation} (a rate quota of the account, or of the function's "
            "concurrency) on each try: nothing was done; run it again later, sending fewer at "
            "once (a command's --rate), or ask AWS to raise the quota"
        )
    return (
        f"AWS throttled {operation} (a rate quota of the account, or of the function's "
        "concurrency): it is tried again with backoff; if it lasts, send fewer at once (the "
        "worker's concurrency, a command's --rate) or ask AWS to raise the quota"
    )


# The attribute an error of a Lambda call sent to another region than the settings' (the
# function ARN's) carries, naming that region (``AwsClients.lambda_invoker``).
_REGION_ATTRIBUTE = "lambda_destinations_region"


def sent_to_region(exc: BaseException, region: str | None) -> None:
    """Mark ``exc``, the error of a call sent to ``region`` (None: the settings'), so that its
    fix names the region (:func:`not_found_fix`)."""
    if region is not None:
        setattr(exc, _REGION_ATTRIBUTE, region)


def not_found_fix(exc: BaseException, *, what: str = "the function's name") -> str:
    """What to check when Lambda has no function of the name a call gave: ``what`` and the
    region, named when the call went to another one than the settings' (the ARN's)."""
    region = getattr(exc, _REGION_ATTRIBUTE, None)
    where = f"that it is in {region}, the region its ARN names" if region else "the region"
    return f"check {what} (a version or alias too) and {where}"


def _invoke_fix(code: str | None, message: str) -> str | None:
    """What to do about Lambda's refusal of an Invoke's request as sent: a function in tenant
    isolation mode asks for a tenant id, a payload over the asynchronous limit."""
    if code == "InvalidParameterValueException" and "tenan" in message.lower():
        return (
            "the function isolates tenants and Lambda invokes it only with a tenant id, which "
            "lambda-destinations does not send: invoke it with the AWS CLI (aws lambda invoke "
            "--tenant-id ID --invocation-type Event)"
        )
    if code == "RequestEntityTooLargeException":
        return "Lambda takes 1 MB at most for an asynchronous Invoke's payload: send a smaller one"
    return None


def _ses_fix(code: str | None, message: str) -> str | None:
    """What to do about SES's refusal of a send, when its code says: an identity not verified,
    sending suspended or paused, a configuration set SES does not have."""
    if code == "MessageRejected" and "not verified" in message:
        return (
            "verify the sender's address or domain in SES, in the worker's region (in the SES "
            "sandbox, each recipient too); `lambda-destinations doctor` names what is missing"
        )
    if code in ("AccountSuspendedException", "SendingPausedException"):
        return "SES sending is suspended or paused for the account: see its status in SES"
    if code == "MailFromDomainNotVerifiedException":
        return "verify the sender's MAIL FROM domain in SES"
    if code == "NotFoundException" and "configuration set" in message.lower():
        return (
            "create the configuration set in SES, in the worker's region, or set the handler's "
            "configuration_set to one that exists (or remove it)"
        )
    return None


# A KMS key's refusal, as each service words its code (SQS: ``KmsDisabled`` by its JSON shape,
# ``KMS.DisabledException`` by its Query code; Lambda: ``KMSDisabledException``), by what is
# wrong with the key. Throttling is TRANSIENT_CODES'.
_KMS_CODE = re.compile(r"^KMS\.?|Exception$", re.IGNORECASE)
_KMS_PROBLEMS = {
    "accessdenied": "does not let {credentials} use it: allow {credentials} {actions} on the "
    "key (in the key's policy, or an IAM policy)",
    "disabled": "is disabled: enable it in KMS (aws kms enable-key)",
    "invalidstate": "cannot be used in its state (pending deletion, or pending import): cancel "
    "its deletion (aws kms cancel-key-deletion) and enable it; once it is deleted, nothing it "
    "encrypted can be read again",
    "notfound": "does not exist (deleted, or in another region): {reset}",
    "invalidkeyusage": "is not a symmetric encryption key: {reset}",
}


def kms_fix(code: str | None, operation: str, credentials: str = WORKER_CREDENTIALS) -> str | None:
    """What to do about a KMS key that refused a call's encryption or decryption: an SSE-KMS
    queue's, or a function's (its environment variables', which an Invoke needs); None for a
    code that is no KMS key's refusal."""
    if not kms_refused(code):
        return None
    problem = _KMS_PROBLEMS[_KMS_CODE.sub("", str(code)).lower()]
    if operation == "Invoke":  # the function's key, which its own role uses, not the caller
        key = "the function's KMS key (its environment variables')"
        credentials = "the function's execution role"
        actions, reset = "kms:Decrypt", "set the function's key to one that exists, in Lambda"
    else:
        key = "the queue's KMS key (its server-side encryption)"
        reading = operation == "ReceiveMessage"
        actions = "kms:Decrypt" if reading else "kms:GenerateDataKey and kms:Decrypt"
        reset = "set the queue's encryption to a key that exists, or to SQS-managed (SSE-SQS)"
    return f"{key} {problem.format(credentials=credentials, actions=actions, reset=reset)}"


def kms_refused(code: str | None) -> bool:
    """Whether the AWS error ``code`` is a KMS key's refusal (:func:`kms_fix` has its fix)."""
    if not code or not code.upper().startswith("KMS") or code in TRANSIENT_CODES:
        return False
    return _KMS_CODE.sub("", code).lower() in _KMS_PROBLEMS


# The codes of TRANSIENT_CODES that say AWS throttled the call, not that it failed.
_THROTTLED = re.compile(r"Throttl|TooManyRequests|LimitExceeded")
# SES's answer once the account's 24-hour sending quota is spent: SES v2 says it with
# LimitExceededException, SES v1 with Throttling, each in this message.
_QUOTA_SPENT = "Daily message quota exceeded"
QUOTA_WAIT = 86400.0  # seconds: the quota's window, what a send that met it is asked to wait


def quota_spent(exc: BaseException) -> bool:
    """Whether ``exc`` is SES saying the account's 24-hour sending quota is spent: no try in
    the next seconds or minutes can pass."""
    return isinstance(exc, ClientError) and _QUOTA_SPENT in code_and_message(exc)[1]


def with_fix(
    exc: BaseException,
    text: str,
    *,
    credentials: str = WORKER_CREDENTIALS,
    on: str | None = None,
    last_try: bool = False,
    then: str | None = None,
) -> str:
    """``text`` (an error's description) and, when the error's code says, what to do about it
    (:func:`aws_fix`): ``…: check the worker's AWS credentials and that they are allowed …``."""
    fix = aws_fix(exc, credentials=credentials, on=on, last_try=last_try, then=then)
    return f"{text}: {fix}" if fix else text


# Whose credentials a command's line names: the operator's own, as the command runs with them.
OPERATOR_CREDENTIALS = "the AWS credentials"


def refused_line(
    exc: ClientError,
    *,
    credentials: str = OPERATOR_CREDENTIALS,
    set_where: str = "",
    on: str | None = None,
) -> str:
    """The one line of an AWS error answer to an operator's command or the console's request:
    the keys not taken, a permission they lack (on ``on``, when given), a KMS key that refused,
    a function Lambda does not have, or the answer as it is. ``credentials`` names whose they
    are; ``set_where`` ends the fix for keys not taken (where they are set, and what then)."""
    code = error_code(exc)
    operation = exc.operation_name or "the call"
    message = first_line(exc)
    if isinstance(exc, AccountRefusal):  # a function or role of another account: what to set
        return f"{operation} was refused ({message}): {exc.fix}"
    if (kms := kms_fix(code, operation, credentials)) is not None:
        return f"{operation} failed: {message}: {kms}"
    if code in CREDENTIAL_CODES:  # the keys themselves, not a permission they lack
        return f"{operation} was refused ({message}): {keys_not_taken(credentials, set_where)}"
    if code in DENIED_CODES:
        return f"{operation} was refused ({message}): {denied_fix(operation, credentials, on)}"
    if code == "ResourceNotFoundException":  # Lambda's answer to a function it does not have
        return f"{operation} failed: {message}: {not_found_fix(exc, what='the name')}"
    return f"{operation} failed: {message}"


def keys_not_taken(credentials: str, set_where: str = "") -> str:
    """What to do about keys AWS did not take, for an operator's command or the console:
    ``credentials`` names whose; ``set_where`` ends the fix (where they are set, and what then)."""
    taken = "the credentials" if credentials == OPERATOR_CREDENTIALS else credentials
    return (
        f"AWS did not take {taken} (expired, unknown, or this machine's clock is off): fix "
        f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE{set_where}, or sign in "
        "again (aws sso login)"
    )


def refused_setup(exc: ClientError) -> bool:
    """Whether :func:`refused_line`'s refusal is of the set-up (the credentials, a permission,
    another account's function or role), not of this one call: the same fails every time."""
    code = error_code(exc)
    operation = exc.operation_name or "the call"
    if kms_fix(code, operation) is not None:
        return False
    return isinstance(exc, AccountRefusal) or code in DENIED_CODES


def text_of(exc: BaseException) -> str:
    """``str(exc)``, which is the raising code's own: a ``__str__`` that fails is said so. A
    refusing or absent egress proxy is said with what to change (botocore says only "Failed to
    connect to proxy URL", the same for a refusal, a missing password and a proxy that is down).
    """
    if isinstance(exc, ProxyConnectionError):
        proxy = proxy_named(str(exc.kwargs.get("proxy_url", "")))
        return proxy_problem(proxy, exc.kwargs.get("error"))
    return exception_text(exc)


def first_line(exc: BaseException, *, limit: int = 300, typed: bool = False) -> str:
    """The first line of an error's text (an AWS error's code and message; botocore's refusal
    of a parameter with its reasons, joined), at most ``limit`` characters, redacted before it
    is cut (a URL cut inside its password could not be masked after); with ``typed``, after the
    error's type, as the console shows it."""
    if (answer := not_aws_answer(exc)) is not None:
        text = f"{said_not_aws(answer, by='the endpoint')} {_ASK_ENDPOINT}"
    elif isinstance(exc, ClientError):
        code, message = code_and_message(exc)
        text = f"{code}: {message}".strip().rstrip(":")
    else:
        text = text_of(exc)
    lines = _without_html(text).strip().splitlines()
    if isinstance(exc, ParamValidationError) and lines:
        # botocore says its reasons on the lines after "Parameter validation failed:"
        lines = [f"{lines[0]} {'; '.join(reason.strip() for reason in lines[1:])}".strip()]
    line = redact(lines[0]) if lines else ""
    if typed or not line:
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line[:limit]


def _without_html(text: str) -> str:
    """``text`` with an HTML page in it replaced by its title: one line, saying what it was."""
    found = _HTML_PAGE.search(text)
    if found is None:
        return text
    page = _html_page(text[found.start() :])
    return f"{text[: found.start()].rstrip()} {said_not_aws(page)} {_ASK_ENDPOINT}"


def _html_page(page: str) -> str:
    """An HTML page, named by its title when it has one: ``an HTML page titled '404 Not Found'``."""
    title = _HTML_TITLE.search(page)
    return f"an HTML page titled {' '.join(title[1].split())[:120]!r}" if title else "an HTML page"


class UnreadableJson(BotoCoreError, ResponseParserError):  # type: ignore[misc]
    """A 2xx answer of a JSON-protocol service (SQS, SES v2) whose body is not a JSON object,
    or not one of the operation's answers (a proxy's ``{"status": "ok"}``): a parser error, as
    botocore's XML parser raises for a body that is not XML, and a BotoCoreError, as every
    other failed call of botocore's, so that what catches those catches it (see
    ``aws.refuse_unreadable_json``, ``aws._json_check``)."""

    fmt = (
        "Unable to parse response ({reason}), invalid JSON received. Further retries may "
        "succeed:\n{body}"
    )


class UnreadableXml(BotoCoreError, ResponseParserError):  # type: ignore[misc]
    """A 2xx answer of a query-protocol service (SNS), or of S3, that is XML but not the
    operation's answer (an XHTML page): as botocore's own error for a body that is not XML
    (``aws.refuse_unreadable_query``, ``aws._refuse_unreadable_s3``)."""

    fmt = (
        "Unable to parse response ({reason}), invalid XML received. Further retries may "
        "succeed:\n{body}"
    )


def not_aws_answer(exc: BaseException) -> str | None:
    """What the endpoint answered, when ``exc`` is an answer no AWS service gives (a web server
    or a proxy at the endpoint URL): ``404 with no AWS error in it``, ``501 with an HTML page
    titled 'Error response'``, ``with an empty body``; None for anything else.

    An AWS error names its code (``QueueDoesNotExist``): botocore makes one of the HTTP status
    only when the answer has none. A body the XML parser of STS or SNS cannot read has no
    status to give (botocore's ResponseParserError), nor has a 2xx body of SQS's that is not
    JSON, or not its answer (``aws.refuse_unreadable_json``, ``aws._json_check``).
    """
    if isinstance(exc, ResponseParserError):
        body = text_of(exc).partition("\n")[2]
        if _HTML_PAGE.search(body):
            return _html_page(body)
        if body.strip() in ("", "b''"):
            return "with an empty body"
        reason = re.search(r"\((.*?)\), invalid (XML|JSON)", text_of(exc))
        language = reason[2] if reason else "XML"
        return f"what is not AWS's {language} ({reason[1] if reason else 'unreadable'})"
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if str(error.get("Code")) != str(status):
        return None
    message = str(error.get("Message") or "")
    if _HTML_PAGE.search(message):
        return f"{status} with {_html_page(message)}"
    # AWS names every error of the caller's (4xx); a 5xx's empty body may be a real outage.
    if 400 <= status < 500 and not message.strip():
        return f"{status} {_NO_AWS_ERROR}"
    return None


def classify(exc: BaseException) -> Kind:
    """transient: retry may help soon; permanent: it never will; unknown: a bug, most likely.

    Unknown errors are retried at message level only (with backoff, up to the queue's
    ``maxReceiveCount``), never in process: a fixed deploy may make them pass.
    """
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, ClientError):
        code = error_code(exc) or ""
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        # 407: an egress proxy in front of an http:// endpoint wants credentials (AWS never
        # answers it); fixed in the proxy's variable, the message waits for that
        transient_status = status >= 500 or status in (407, 429)
        if code in TRANSIENT_CODES or code in CREDENTIAL_CODES or transient_status:
            return "transient"
        return "permanent"
    if isinstance(exc, (*CONNECTION_ERRORS, OSError)):
        return "transient"
    if isinstance(exc, ResponseParserError):
        # An answer that is not AWS's (a captive portal's or a proxy's page; UnreadableJson
        # too): the endpoint is not AWS for now, an outage as a refused connection is.
        return "transient"
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiobotocore always brings aiohttp
        return "unknown"
    if isinstance(exc, aiohttp.ClientError):
        return "transient"
    return "unknown"


def endpoint_lacks(exc: BaseException) -> bool:
    """Whether the endpoint answered that it does not implement the operation (LocalStack's
    HTTP 501, a NotImplemented code): no retry, and no permission, mends that."""
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 501 or error_code(exc) in NOT_IMPLEMENTED_CODES


def is_transient(exc: BaseException) -> bool:
    return classify(exc) == "transient"


def answered(exc: BaseException) -> bool:
    """Whether the service surely did not act on the request: it answered with an error, the
    connection was never made, or the request was never sent (no credentials, say). Anything
    else (a broken connection, a read timeout) is in doubt: a request that is not idempotent
    (an Invoke) must not be sent again on its own."""
    return isinstance(
        exc,
        (
            ClientError,
            EndpointConnectionError,
            ConnectTimeoutError,
            ProxyConnectionError,  # the proxy refused the tunnel or was not reached: nothing sent
            # A 2xx page in place of AWS's answer (a captive portal's): what answered is not
            # AWS, as a proxy's 4xx or 5xx page (a ClientError) is not.
            ResponseParserError,
            *NOT_SENT_ERRORS,
        ),
    )


def answered_and_transient(exc: BaseException) -> bool:
    """Worth another try even for a request that is not idempotent."""
    return answered(exc) and is_transient(exc)


def asked_wait(exc: BaseException | None) -> float | None:
    """Seconds ``exc`` says the other side asked to wait before the next try (a
    TransientError's ``retry_after``; a day, the window of SES's spent sending quota), else
    None."""
    if isinstance(exc, TransientError):
        return exc.retry_after
    return QUOTA_WAIT if exc is not None and quota_spent(exc) else None


class _StopWhenAskedTooLong(stop_base):
    """Stop when the last error asks for a wait the rest of ``max_delay`` cannot hold: the
    message-level retry waits it instead, without holding a handler slot."""

    def __init__(self, max_delay: float) -> None:
        self.max_delay = max_delay

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        asked = asked_wait(outcome.exception() if outcome is not None else None)
        elapsed = retry_state.seconds_since_start or 0.0
        return asked is not None and elapsed + asked > self.max_delay


def in_process_retrying(
    attempts: int,
    max_delay: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    retry_if: Callable[[BaseException], bool] = is_transient,
) -> AsyncRetrying:
    """Tenacity policy for transient handler errors: a few quick tries, then give up. A try
    never comes sooner than the last error asked (:func:`asked_wait`)."""
    backoff = wait_exponential(
        multiplier=INITIAL_WAIT, max=max(INITIAL_WAIT, max_delay / 2)
    ) + wait_random(0, INITIAL_WAIT)

    def wait(retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = asked_wait(outcome.exception() if outcome is not None else None)
        return max(backoff(retry_state), asked or 0.0)

    return AsyncRetrying(
        retry=retry_if_exception(retry_if),
        stop=stop_after_attempt(attempts)
        | stop_after_delay(max_delay)
        | _StopWhenAskedTooLong(max_delay),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    max_delay: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``call()``, tried up to ``attempts`` times while it fails transiently.

    The first try is a plain call: building a tenacity loop costs about as much as a store
    round trip, and almost every call succeeds, so the loop is built only after a failure.
    """
    try:
        return await call()
    except Exception as exc:
        asked = asked_wait(exc)
        if attempts < 2 or not is_transient(exc) or (asked or 0.0) > max_delay:
            raise
    first = max(INITIAL_WAIT + random.uniform(0, INITIAL_WAIT), asked or 0.0)
    await sleep(first)
    # What was asked counts against the budget: a second ask must fit in what is left.
    budget = max_delay - first if asked else max_delay
    async for attempt in in_process_retrying(attempts - 1, budget, sleep=sleep):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def retry_delay(attempt: int, base: float, cap: float, asked: float | None = None) -> float:
    """The message-level retry delay: :func:`backoff_delay`, or the wait the failure asked
    for (:func:`asked_wait`) when that is longer, at most ``cap``."""
    delay = backoff_delay(attempt, base, cap)
    return delay if asked is None else max(delay, min(asked, cap))


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: in [d/2, d] for d = min(cap, base * 2**(n-1)).

    Used for message-level retries (``attempt`` is ``ApproximateReceiveCount``) and for
    reconnecting to an unreachable endpoint. Half the delay is kept so retries always spread
    out over time even with unlucky draws.
    """
    exponent = min(max(attempt, 1) - 1, 32)
    delay = min(cap, math.ldexp(base, exponent))
    return delay / 2 + random.uniform(0, delay / 2)
