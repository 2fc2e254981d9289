"""What ``doctor`` checks of each configured handler against its endpoint, sending nothing.

A handler that can never succeed (an unverified SES sender, an SMTP login the server refuses, a
replay target that does not exist) fails every record routed through it, and a phone number
that opted out loses every SMS to it (SNS takes the Publish and delivers nothing); these checks
find it before the first record does.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ssl
from collections.abc import Awaitable, Iterable
from typing import Any, Literal, TypeGuard, TypeVar

import aiosmtplib
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from lambda_destinations.aws import AwsClients, all_items
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError, TransientError
from lambda_destinations.handlers.email import (
    EmailHandler,
    SesTransport,
    SmtpTransport,
    bare_address,
    smtp_outcome,
    smtp_problem,
)
from lambda_destinations.handlers.in_doubt import cut_off_first
from lambda_destinations.handlers.registry import HandlerRegistry, configured_handlers
from lambda_destinations.handlers.replay import ReplayHandler
from lambda_destinations.handlers.sms import SmsHandler
from lambda_destinations.operations._reads import Reads
from lambda_destinations.redact import mask_email, mask_phone, mask_secrets, redact
from lambda_destinations.retrying import (
    CONNECTION_ERRORS,
    DENIED_CODES,
    aws_fix,
    code_and_message,
    endpoint_lacks,
    error_code,
    first_line,
    is_transient,
    not_aws_answer,
    said_not_aws,
    text_of,
)
from lambda_destinations.schemas import (
    function_account,
    invoke_function_name,
    invoke_function_region,
)

Status = Literal["ok", "warn", "error"]
T = TypeVar("T")
# What every error row adds: where the records go meanwhile.
RETRIED = (
    ": the worker retries this: every record routed through it waits until the server answers, "
    "and its queue dead-letters it after maxReceiveCount receives"
)
QUARANTINED = (
    ": every record routed through it fails the same way and is quarantined (kept in the store "
    "and sent to the DLQ; `quarantine resend` once fixed)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One row of the doctor's table."""

    check: str
    status: Status
    detail: str
    fix: str = ""
    unreachable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def check_handlers(
    settings: Settings, aws: AwsClients | None, reads: Reads | None = None
) -> list[Check]:
    """The rows of every configured handler. Without ``aws`` (no region, no usable credentials
    or endpoint), only what needs no AWS call: its settings, its timeout, its SMTP server.

    What two handlers ask alike (one SES sender, the account's SMS settings, the functions a
    replay needs) is read once, in ``reads``: doctor's own, which has listed the functions."""
    registry = HandlerRegistry(settings)
    reads = reads or Reads()
    findings: list[Check] = []
    for name in configured_handlers(settings):
        check = f"handler {name}"
        try:
            handler = registry.configured(name)
        except ConfigError as exc:
            findings.append(Check(check, "error", str(exc), "fix its settings"))
            continue
        if line := cut_off_first(name, handler, settings.handler_timeout):
            findings.append(Check(f"{check}: timeout", "warn", line))
        checked = _check_one(check, handler, aws, reads, settings)
        findings.extend(await caught(check, checked, findings) or [])
    return findings


async def _check_one(
    check: str, handler: Any, aws: AwsClients | None, reads: Reads, settings: Settings
) -> list[Check]:
    try:
        if isinstance(handler, EmailHandler) and isinstance(handler.transport, SmtpTransport):
            return [await _smtp(check, handler.transport, utf8=handler.needs_smtputf8)]
        if aws is None:  # the rest asks AWS
            return []
        if isinstance(handler, EmailHandler) and isinstance(handler.transport, SesTransport):
            return await _ses(check, handler, aws, reads)
        if isinstance(handler, SmsHandler):
            return await _sms(check, handler, aws, reads)
        if isinstance(handler, ReplayHandler):
            return await _replay(check, handler, aws, reads, settings)
    except (*CONNECTION_ERRORS, ClientError, ResponseParserError) as exc:
        if (row := _endpoint_row(check, exc, settings)) is None:
            raise  # an AWS error answer: caught() says it
        return [row]
    return []


def _endpoint_problem(exc: BaseException) -> bool:
    """Whether the endpoint, not the handler, is what ``exc`` is about: it did not answer, or
    answered what no AWS service gives (a web server's page, what is not AWS's XML)."""
    return isinstance(exc, CONNECTION_ERRORS) or not_aws_answer(exc) is not None


def _endpoint_row(check: str, exc: BaseException, settings: Settings) -> Check | None:
    """The failed row of a handler's check the endpoint kept from being made, as the other
    checks say it: no answer is an unreachable endpoint (exit 4), an answer not AWS's a failed
    check (1), with the fix for the endpoint; None for any other error."""
    where = settings.shown_endpoint()
    if isinstance(exc, CONNECTION_ERRORS):
        detail = f"{where} does not answer ({error_text(exc)})"
        return Check(check, "error", detail, settings.endpoint_fix(), unreachable=True)
    if (answer := not_aws_answer(exc)) is not None:
        return Check(check, "error", said_not_aws(answer, by=where), settings.not_aws_fix())
    return None


async def caught(check: str, part: Awaitable[T], rows: list[Check]) -> T | None:
    """What ``part`` (a check, or a part of one, that reads AWS) gave; None, and its failed row
    ``check`` added to ``rows``, when an AWS error answer came out of it: one it did not foresee
    (a 5xx after botocore's retries, a throttle, a code none of its reads expects) fails that
    check, not the run, and the other checks still run and say their rows.

    Only AWS's answers: the endpoint not answering still stops the run (exit 4).
    """
    try:
        return await part
    except ClientError as exc:
        rows.append(aws_error_row(check, exc))
        return None


def unforeseen(exc: BaseException) -> TypeGuard[ClientError]:
    """Whether ``exc`` is an AWS error answer that no read of a check foresees: neither a
    refusal of the credentials (a warning naming the permission), nor an answer no AWS service
    gives (said as what the endpoint answered)."""
    return (
        isinstance(exc, ClientError)
        and error_code(exc) not in DENIED_CODES
        and not_aws_answer(exc) is None
        and not endpoint_lacks(exc)  # an emulator's: its warning says the check was not made
    )


def aws_error_row(check: str, exc: ClientError) -> Check:
    """A failed row ``check`` for an AWS error answer: the operation, the code and the first
    line of AWS's message, and what to do about it."""
    operation = exc.operation_name or "an AWS call"
    if endpoint_lacks(exc):  # an emulator's gap: not checked here, nothing wrong found
        fix = f"the endpoint does not implement {operation}: this is checked against AWS"
        return Check(check, "warn", f"{operation} failed: {first_line(exc)}", fix)
    if error_code(exc) not in DENIED_CODES and is_transient(exc):  # a 5xx, a throttle
        fix = "AWS answered with an error: run doctor again"
    else:  # the permission to allow, the keys to fix, or what AWS's code says
        fix = aws_fix(exc, credentials="the AWS credentials") or (
            "not an answer doctor expects: act on AWS's message, then run doctor again"
        )
    return Check(check, "error", f"{operation} failed: {first_line(exc)}", fix)


def error_text(exc: BaseException) -> str:
    """An error's text for a check's line, redacted before it is cut (a cut URL hides nothing).

    botocore quotes the whole endpoint URL (``Could not connect to the endpoint URL: "..."``).
    An answer no AWS service gives is said as the other commands say it (an HTML page by its
    title), not as its body.
    """
    if (answer := not_aws_answer(exc)) is not None:
        return said_not_aws(answer)
    if isinstance(exc, ClientError):
        code, text = code_and_message(exc)
        message = redact(" ".join(text.split()))[:160]
        return f"{code}: {message}" if message else str(code)
    return redact(" ".join(text_of(exc).split()))[:200] or type(exc).__name__


def _unread(check: str, what: str, exc: BaseException) -> Check:
    """A warning that ``what`` (``SES identities cannot be read``) for ``exc``, with the
    permission to allow when AWS refused it; a failed row for an AWS error no read foresees.

    ``exc`` is raised again when the endpoint is what it is about (no answer, an answer not
    AWS's): :func:`_check_one` says it, with the endpoint's fix, whichever handler met it."""
    if _endpoint_problem(exc):
        raise exc
    if unforeseen(exc):
        return aws_error_row(check, exc)
    fix = aws_fix(exc, credentials="the AWS credentials") if isinstance(exc, ClientError) else None
    return Check(check, "warn", f"{what} ({error_text(exc)})", fix or "")


# -- email --------------------------------------------------------------------------------------


async def _ses_verified(ses: Any, reads: Reads, identity: str) -> bool | None:
    """Whether SES may send as ``identity``; None when SES does not know it. A run's SES
    calls are all in the settings' region: the identity names what is read."""
    try:
        answer = await reads.once(
            ("ses identity", identity), lambda: ses.get_email_identity(EmailIdentity=identity)
        )
    except ClientError as exc:
        if error_code(exc) in {"NotFoundException", "NotFound"}:
            return None
        raise
    status = str(answer.get("VerificationStatus", "")).upper()
    return bool(answer.get("VerifiedForSendingStatus")) or status == "SUCCESS"


async def _ses_verified_address(ses: Any, reads: Reads, address: str) -> bool | None:
    """Whether SES may send as, or in the sandbox to, ``address`` (a ``Name <a@b>`` too): the
    address verified, or its domain."""
    bare = bare_address(address)
    domain = bare.rpartition("@")[2]
    return await _ses_verified(ses, reads, bare) or await _ses_verified(ses, reads, domain)


async def _ses(check: str, handler: EmailHandler, aws: AwsClients, reads: Reads) -> list[Check]:
    ses = await aws.client("sesv2")
    sender = bare_address(handler.sender)
    domain = sender.rpartition("@")[2]
    try:
        verified = await _ses_verified_address(ses, reads, sender)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        return [_unread(check, "SES identities cannot be read", exc)]
    if not verified:
        return [
            Check(
                check,
                "error",
                f"SES sender {sender} is not a verified identity in {aws.region}" + QUARANTINED,
                f"verify {sender} or {domain} in SES (region {aws.region}), or use "
                'transport = "smtp"',
            )
        ]
    rows = [Check(check, "ok", f"SES sender {sender} is verified")]
    transport = handler.transport
    if isinstance(transport, SesTransport) and (named := transport.configuration_set):
        rows.append(await _configuration_set(check, named, ses, reads, aws.region))
    return [*rows, await _sandbox(check, handler, ses, reads)]


async def _configuration_set(
    check: str, named: str, ses: Any, reads: Reads, region: str | None
) -> Check:
    """The row of the configuration set an SES handler sends through: SES refuses each
    SendEmail naming one it does not have, so every record would be quarantined."""
    row = f"{check}: SES configuration set"
    try:
        await reads.once(
            ("ses configuration set", named),
            lambda: ses.get_configuration_set(ConfigurationSetName=named),
        )
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        if error_code(exc) in {"NotFoundException", "ConfigurationSetDoesNotExistException"}:
            return Check(
                row,
                "error",
                f"{named} does not exist in SES (region {region})" + QUARANTINED,
                f"create the configuration set {named} in SES (region {region}), or fix the "
                "handler's configuration_set",
            )
        return _unread(row, f"configuration set {named} cannot be read", exc)
    return Check(row, "ok", f"{named} exists")


async def _sandbox(check: str, handler: EmailHandler, ses: Any, reads: Reads) -> Check:
    try:
        # A call written out (not the bound method), as tests/deploy's scan of calls reads it.
        account = await reads.once(("ses account", ""), lambda: ses.get_account())
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        if isinstance(exc, CONNECTION_ERRORS):
            raise  # the endpoint did not answer: _check_one says it
        # Any answer (an emulator's 404 page: moto has no GetAccount) leaves it unknown.
        return Check(f"{check}: SES sandbox", "ok", f"not known here ({error_text(exc)})")
    if account.get("ProductionAccessEnabled", True):
        return Check(f"{check}: SES sandbox", "ok", "out of the sandbox")
    # Each bare (its name would be no identity), and verified by itself or its domain.
    recipients = [bare_address(r) for r in (*handler.to, *handler.cc, *handler.bcc)]
    try:
        unverified = [r for r in recipients if not await _ses_verified_address(ses, reads, r)]
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        # A policy may allow reading the sender's identity and no other.
        what = "in the sandbox, and whether its recipients are verified cannot be checked"
        return _unread(f"{check}: SES sandbox", what, exc)
    if unverified:
        return Check(
            f"{check}: SES sandbox",
            "error",
            f"in the SES sandbox, which sends only to verified addresses; not verified: "
            f"{', '.join(map(mask_email, unverified))}" + QUARANTINED,
            "verify the recipients, or request production access for SES",
        )
    return Check(f"{check}: SES sandbox", "ok", "in the sandbox; every recipient is verified")


async def _smtp(check: str, transport: SmtpTransport, *, utf8: bool = False) -> Check:
    """Connect, STARTTLS, greet and log in as a send does; with ``utf8`` (an address with
    other than ASCII before its @), the server must offer SMTPUTF8, as each send would ask."""
    where = f"{transport.host}:{transport.port}"
    client = aiosmtplib.SMTP(
        hostname=transport.host,
        port=transport.port,
        use_tls=transport.security == "tls",
        start_tls=transport.security == "starttls",
        timeout=min(transport.timeout, 10),
        validate_certs=transport.validate_certs,
        cert_bundle=transport.cert_bundle,
    )
    steps: list[str] = []  # those that went through
    try:
        await client.connect()  # and, when the settings ask for it, EHLO and STARTTLS
        steps += ["connected"] + (["EHLO", "STARTTLS"] if transport.security == "starttls" else [])
        steps.append(await _greet(client))
        if utf8 and not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        if transport.username:
            await client.login(transport.username, transport.password or "")
            steps.append(f"logged in as {transport.username}")
        await client.quit()
    except (aiosmtplib.SMTPException, OSError) as exc:
        return _smtp_failed(check, transport, steps, exc)
    finally:
        client.close()  # a refusal leaves the connection open (after quit: nothing to close)
    return Check(check, "ok", f"SMTP server {where}: {' · '.join(steps)} (nothing sent)")


async def _greet(client: aiosmtplib.SMTP) -> str:
    """Greet the server as a send does (EHLO, or HELO where the server takes no EHLO): the
    greeting it took. A server that takes neither fails here, as every send to it would."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()
        return "HELO"
    return "EHLO"


def _smtp_failed(
    check: str, transport: SmtpTransport, steps: list[str], exc: BaseException
) -> Check:
    """The failure as the worker would meet it: how far the talk went, and whether records
    would be retried (the server unreachable) or quarantined (what it answered)."""
    where = f"{transport.host}:{transport.port}"
    # What the worker says of it (a TLS handshake with a port that speaks none, an untrusted
    # certificate, no greeting), from the same function, in place of OpenSSL's own text.
    problem = smtp_problem(exc, transport.secrets)
    if isinstance(exc, aiosmtplib.SMTPException | ssl.SSLError):  # STARTTLS raises its own
        outcome = smtp_outcome(exc, transport.host, transport.port, transport.secrets)
        retried = isinstance(outcome, TransientError)
        # A connect error with a reply is the server's greeting refusing us, and one the
        # problem explains happened on a connection the server took: either way, reached.
        connected = (
            problem is not None
            or isinstance(exc, aiosmtplib.SMTPResponseException)
            or not isinstance(exc, aiosmtplib.SMTPConnectError)
        )
    else:  # an OSError of our side (the certificate bundle): not the server's answer
        retried, connected = True, False
    error = problem or f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    error = mask_secrets(error, transport.secrets)  # a reply may quote the login back
    talk = f"{' · '.join(steps or ['connected'])}, then {error}"
    if not connected:
        talk = f"not reached ({error})"
    return Check(
        check,
        "error",
        f"SMTP server {where}: {talk}" + (RETRIED if retried else QUARANTINED),
        "check host, port, security and the login (nothing was sent)",
    )


# -- sms ----------------------------------------------------------------------------------------


async def _sms(check: str, handler: SmsHandler, aws: AwsClients, reads: Reads) -> list[Check]:
    sns = await aws.client("sns")
    try:
        # A call written out, as for get_account.
        answer = await reads.once(("sns sms attributes", ""), lambda: sns.get_sms_attributes())
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # SNS's XML parser's too
        return [_unread(check, "SNS SMS attributes cannot be read", exc)]
    attributes = answer.get("attributes", {})
    findings = []
    if attributes.get("MonthlySpendLimit") == "0":
        findings.append(
            Check(
                check,
                "error",
                "SNS's MonthlySpendLimit is 0: no SMS can be sent" + QUARANTINED,
                "raise the account's SMS spending limit (SNS text messaging preferences)",
            )
        )
    try:
        opted_out = [n for n in handler.phone_numbers if await _opted_out(sns, reads, n)]
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        what = "whether its numbers opted out of SMS cannot be checked"
        return [*findings, _unread(check, what, exc)]
    if opted_out:
        findings.append(
            Check(
                check,
                "error",
                f"opted out of SMS: {', '.join(map(mask_phone, opted_out))}; SNS takes each "
                "Publish to them and delivers nothing: the worker logs their SMS sent, and "
                "they never arrive",
                "opt the numbers in again (sns opt-in-phone-number) or remove them",
            )
        )
    if not findings:
        kind = attributes.get("DefaultSMSType", "account default")
        findings.append(
            Check(
                check,
                "ok",
                f"{len(handler.phone_numbers)} number(s), none opted out; SMS type {kind}",
            )
        )
    return findings


async def _opted_out(sns: Any, reads: Reads, number: str) -> bool:
    """Whether ``number`` opted out of SMS: asked once a run, however many handlers text it."""
    answer = await reads.once(
        ("sns opted out", number),
        lambda: sns.check_if_phone_number_is_opted_out(phoneNumber=number),
    )
    return bool(answer.get("isOptedOut"))


# -- replay -------------------------------------------------------------------------------------


async def function_names(
    aws: AwsClients, reads: Reads, account: str | None = None, region: str | None = None
) -> list[str]:
    """The names of every function in ``account`` (default: our own) and ``region`` (default:
    the settings'), listed once a run: doctor's listing (every function, before --function
    picks some) is the one each replay handler needs."""

    async def read() -> list[str]:
        lam = await aws.client_in(account, "lambda", region=region)
        return [f["FunctionName"] for f in await all_items(lam, "list_functions", "Functions")]

    return await reads.once(("lambda functions", f"{account or ''}@{region or aws.region}"), read)


async def _replay(
    check: str, handler: ReplayHandler, aws: AwsClients, reads: Reads, settings: Settings
) -> list[Check]:
    try:
        names = await function_names(aws, reads)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        return [_unread(check, "functions cannot be listed", exc)]
    globs = _missing(handler.policy.functions or (), names)
    missing = [f"{glob} in {aws.region}" for glob in globs]
    legacy = handler.legacy_function  # its form is checked at start: a name it has
    # An ARN of another region, or of an account of the accounts table, is invoked there
    # (AwsClients.lambda_invoker, with that account's role): looked up there.
    region = (invoke_function_region(legacy) if legacy else None) or aws.region
    account = function_account(legacy) if legacy else None
    try:
        if legacy and (region != aws.region or account in settings.accounts):
            names_there = await function_names(aws, reads, account, region)
        else:
            names_there = names
    except (ClientError, BotoCoreError, ResponseParserError) as exc:  # STS's, for a role
        return [_unread(check, f"functions in {region} cannot be listed", exc)]
    if legacy and invoke_function_name(legacy) not in names_there:
        missing.append(f"{legacy} in {region}")
    if missing:
        return [
            Check(
                check,
                "error",
                f"no function matches {', '.join(missing)}: replays of them end as errors "
                "(Function not found)",
                "fix functions / legacy_function, or deploy the function",
            )
        ]
    return [Check(check, "ok", f"its target functions exist ({len(names)} in the account)")]


def _missing(globs: Iterable[str], names: list[str]) -> list[str]:
    return [glob for glob in globs if not any(fnmatch.fnmatchcase(n, glob) for n in names)]
