"""The built-in ``email`` handler: a message per record (or per digest), by SES v2 or SMTP.

::

    [handlers.oncall-mail]
    type = "email"
    transport = "ses"                     # SES v2 SendEmail (the sender must be verified)
    from = "Lambda alerts <alerts@example.com>"
    to = ["oncall@example.com"]
    cc = ["orders-team@example.com"]
    subject = "[{function_name}] {error_type}: {error_message:.80}"

    [handlers.smtp-mail]
    type = "email"
    transport = "smtp"
    host = "smtp.example.com"
    security = "starttls"                 # or "tls" (port 465), or "none"
    username = "alerts"
    password_env = "SMTP_PASSWORD"        # read from the environment at start
    from = "alerts@example.com"
    to = ["oncall@example.com"]

By default the text says what failed, where, when, the error type and message and the first
lines of the stack trace (``stack_lines``); payloads are added only with
``include_payloads = true`` (cut to ``payload_limit`` characters each). ``html`` adds an HTML
part (values in it are HTML-escaped). What the record brings to the body arrives as lines
without control characters: values as ``_text.multi_line`` makes them, payloads as JSON whose
escapes spell those characters (``_text.json_lines``). Each message carries a
``Message-ID`` derived from the record key, so mail systems can recognise a repeat. Errors: SES
throttling and 5xx, SMTP 4xx replies and connection failures are transient; SES rejections (an
unverified identity), SMTP 5xx replies and refused logins are permanent.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.policy
import email.utils
import hashlib
import html as html_module
import ipaddress
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPStatus
from aiosmtplib.email import flatten_message
from aiosmtplib.protocol import LINE_ENDINGS_REGEX, PERIOD_REGEX
from aiosmtplib.typing import Default
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from lambda_destinations import environment
from lambda_destinations._text import cut, json_cut, json_lines, multi_line, one_line
from lambda_destinations._urls import (
    CERT_FOR_ANOTHER_NAME,
    CERT_HAS_EXPIRED,
    CERT_NOT_YET_VALID,
    NOT_TLS,
    ascii_domain,
    is_host,
)
from lambda_destinations.errors import ConfigError, PermanentError, TransientError
from lambda_destinations.handlers import storm
from lambda_destinations.handlers._addresses import FoldedAddresses, encoded_name
from lambda_destinations.handlers._subject import FoldedSubject
from lambda_destinations.handlers.base import HandlerContext, delivery_of
from lambda_destinations.handlers.in_doubt import (
    RESEND,
    CallUnderWay,
    InDoubt,
    is_in_doubt,
    sending,
)
from lambda_destinations.handlers.storm import DIGEST_FIELDS
from lambda_destinations.handlers.templates import (
    CertBundle,
    Duration,
    NonBlank,
    Template,
    parse_options,
    record_fields,
    shows_anything,
)
from lambda_destinations.redact import echoed, mask_email, mask_secrets, redact

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.jobs import JobContext
    from lambda_destinations.schemas import DecodedMessage
    from lambda_destinations.store import Store

DEFAULT_SUBJECT = "[lambda-destinations] {summary:.150}"
DEFAULT_TEXT = "{summary}\n\n{details}\n"
DEFAULT_DIGEST_SUBJECT = "[lambda-destinations] " + storm.DEFAULT_DIGEST
DEFAULT_DIGEST_TEXT = (
    storm.DEFAULT_DIGEST + ".\n\nThe first {sent} went out one by one.\n"
    "Window: {window_start} to {window_end}\n"
    "First held back: {first_at}\nLast held back: {last_at}\n"
)
SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SES_RECIPIENTS = 50  # SES's most recipients of a mail, to, cc and bcc together


# -- settings -----------------------------------------------------------------------------------


_FULL_STOPS = str.maketrans(dict.fromkeys("\u3002\uff0e\uff61", "."))
# What a host name's label is made of (RFC 1123): letters, digits and hyphens
_LDH = re.compile(r"[A-Za-z0-9-]+")
_LITERAL_FIX = "write [1.2.3.4] or [IPv6:2001:db8::1]"


def _literal_problem(literal: str) -> str | None:
    """What keeps ``literal`` (``[…]``, an RFC 5321 address literal) from being an IPv4
    address or ``IPv6:`` and an IPv6 address, or None."""
    inside = literal[1:-1]
    ipv6 = inside[:5].lower() == "ipv6:"
    try:
        (ipaddress.IPv6Address if ipv6 else ipaddress.IPv4Address)(inside[5:] if ipv6 else inside)
    except ValueError:
        return f"{literal!r} is no address literal: {_LITERAL_FIX}"
    return None


def _domain_problem(domain: str) -> str | None:
    """What keeps ``domain`` (ASCII) from being a host name mail can go to (RFC 5321 and 1035:
    labels of letters, digits and hyphens, no hyphen at either end, 63 characters at most, 253
    in all, the last not all digits) or an address literal, or None."""
    if domain.startswith("[") and domain.endswith("]"):
        return _literal_problem(domain)
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(domain)
        return (
            f"its domain is an IP address without brackets: write it in them, [{domain}] (SMTP "
            "only), or give the host's name"
        )
    if len(domain) > 253:
        return f"its domain has {len(domain)} characters, 253 at most: check the domain"
    for label in domain.split("."):
        shown = f"{label[:10]}…" if len(label) > 20 else label
        if not _LDH.fullmatch(label):
            problem = "has other than letters, digits and hyphens"
        elif label.startswith("-") or label.endswith("-"):
            problem = f"{'starts' if label.startswith('-') else 'ends'} with a hyphen"
        elif len(label) > 63:
            problem = f"has {len(label)} characters, 63 at most"
        else:
            continue
        return f"its domain's label {shown!r} {problem}: check the domain"
    if (last := domain.rpartition(".")[2]).isdigit():
        return (
            f"its domain's last label {last!r} is all digits, as no top-level domain is: check it"
        )
    return None


def address(value: str, where: str) -> str:
    """``value`` as one address (``a@b.example`` or ``Name <a@b.example>``, or a dotless
    ``root@localhost``, or an address literal ``a@[192.0.2.1]``), its domain in ASCII (an IDN's
    Punycode, as SES and DNS need it: :func:`ascii_domain`) and a name with other than ASCII as
    RFC 2047 encoded words (:func:`encoded_name`: SES needs them, and SMTP headers read them)."""
    if any(char in value for char in "\r\n"):
        raise ValueError(f"{where}: an address is one line")
    header = email.policy.default.header_factory("to", value)
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if len(header.addresses) != 1 or defects:
        raise ValueError(
            f"{value!r} is not an email address: write one address per entry, as "
            "a@example.com or Name <a@example.com>"
        )
    (parsed,) = header.addresses
    try:
        # IDNA's full stops (U+3002 and its width variants) are the '.' between labels
        domain = ascii_domain(parsed.domain.translate(_FULL_STOPS))
    except UnicodeError:
        domain = ""
    # A domain without a dot (root@localhost, ops@mailhost) is a relay's on a private network:
    # one label, as a host name has them (SES, which cannot send there, refuses it)
    if not (parsed.username and domain):
        raise ValueError(f"{value!r} is not an email address: its domain is not a host name")
    if (problem := _domain_problem(domain)) is not None:
        raise ValueError(f"{value!r} is not an email address: {problem}")
    one = Address(parsed.display_name, parsed.username, domain)
    if not one.addr_spec.isascii():  # a UTF-8 local part: SMTP with SMTPUTF8 (SES refuses it)
        return str(one)
    if one.display_name.isascii():
        return email.utils.formataddr((one.display_name, one.addr_spec))
    return f"{encoded_name(one.display_name)} <{one.addr_spec}>"


def bare_address(value: str) -> str:
    return email.utils.parseaddr(value)[1]


class EmailOptions(storm.NotifierOptions):
    """The ``[handlers.NAME]`` table of an ``email`` handler."""

    model_config = ConfigDict(extra="forbid", validate_by_alias=True, validate_by_name=True)

    transport: Literal["ses", "smtp"] = "ses"
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1, max_length=50)
    cc: list[str] = Field(default_factory=list, max_length=50)
    bcc: list[str] = Field(default_factory=list, max_length=50)
    reply_to: list[str] = Field(default_factory=list, max_length=10)
    subject: str = DEFAULT_SUBJECT
    text: str = DEFAULT_TEXT
    html: str | None = None
    include_payloads: bool = False
    payload_limit: int = Field(default=4000, ge=100, le=200_000)
    stack_lines: int = Field(default=10, ge=0, le=200)
    digest_subject: str = DEFAULT_DIGEST_SUBJECT
    digest_text: str = DEFAULT_DIGEST_TEXT
    # SES
    configuration_set: str | None = None
    # SMTP
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    timeout: Duration = Field(default=30.0, gt=0, le=600)
    validate_certs: bool = True
    cert_bundle: CertBundle | None = None  # loaded at start

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return address(value, "from")

    @field_validator("to", "cc", "bcc", "reply_to")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        return [address(value, "address") for value in values]

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str | None) -> str | None:
        # A URL, a host:port or a typo would fail every connection, each retried as if the
        # server might come back.
        if value is not None and not is_host(value):
            raise ValueError(
                f"{echoed(value)!r} is not a host name or an IP address: give the server's name "
                "alone, such as smtp.example.com (its port in port)"
            )
        # A Unicode name in Punycode by IDNA 2008: the socket would encode it by IDNA 2003.
        return value if value is None else ascii_domain(value)

    @property
    def everyone(self) -> list[str]:
        return [self.sender, *self.to, *self.cc, *self.bcc, *self.reply_to]

    @model_validator(mode="after")
    def _transport_settings(self) -> EmailOptions:
        smtp_only = ("host", "port", "username", "password", "password_env", "cert_bundle")
        if self.transport == "ses":
            utf8 = [bare_address(value) for value in self.everyone if not value.isascii()]
            domains = [(a, a.rpartition("@")[2]) for a in map(bare_address, self.everyone)]
            if literals := [a for a, domain in domains if domain.startswith("[")]:
                raise ValueError(
                    f"{literals[0]!r}: SES sends to and from domain names only, not address "
                    'literals ([…]): name the host by its domain, or use transport = "smtp"'
                )
            if dotless := [a for a, domain in domains if "." not in domain]:
                raise ValueError(
                    f"{dotless[0]!r}: SES sends to and from domains with a dot (a@example.com) "
                    'only: use a domain on the internet, or transport = "smtp" with your relay'
                )
            if utf8:
                raise ValueError(
                    f"{utf8[0]!r}: SES sends to and from ASCII local parts only (before the @): "
                    'use another address, or transport = "smtp" with a server that has SMTPUTF8'
                )
            count = len(self.to) + len(self.cc) + len(self.bcc)
            if count > SES_RECIPIENTS:  # SES would refuse every mail (MessageRejected)
                raise ValueError(
                    f"{count} recipients in to, cc and bcc: SES sends a mail to "
                    f"{SES_RECIPIENTS} at most; name a mailing list, or split the handler in two"
                )
            given = [name for name in smtp_only if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f'{", ".join(given)} are SMTP settings: set transport = "smtp", or remove them'
                )
        else:
            if self.host is None:
                raise ValueError('transport "smtp" needs host (the SMTP server)')
            if self.configuration_set is not None:
                raise ValueError("configuration_set is an SES setting; transport is smtp")
            if self.password is not None and self.password_env is not None:
                raise ValueError("set password or password_env, not both")
            if (self.password is not None or self.password_env) and self.username is None:
                raise ValueError("a password needs a username")
        return self


# -- what is sent -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Mail:
    """One message, whatever the transport."""

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    text: str
    html: str | None
    message_id: str  # <...@domain>, derived from what the mail is about
    # Recipients a try before took it for (the server refused others for now): not sent again
    sent_to: frozenset[str] = frozenset()

    @property
    def recipients(self) -> list[str]:
        """The envelope's recipients: to, cc and bcc, each once (a server may deliver a copy
        per RCPT TO), less those in ``sent_to``."""
        everyone = dict.fromkeys(bare_address(value) for value in (*self.to, *self.cc, *self.bcc))
        return [rcpt for rcpt in everyone if rcpt not in self.sent_to]


class Transport(Protocol):
    async def send(
        self,
        mail: Mail,
        aws: AwsClients,
        log: FilteringBoundLogger,
        call: CallUnderWay | None = None,
    ) -> str | None:
        """Send ``mail``; ``call``: the handler's in-doubt span, for a transport whose call
        may act only from some point on (SMTP's DATA), to mark that point. Returns a note for
        the handler run when the mail went to some recipients only (SMTP's refused for good),
        else None."""


class SesTransport:
    """SES v2 ``SendEmail`` with simple content (text, and HTML when given)."""

    # SendEmail takes no idempotency token: a lost answer is in doubt (handlers/in_doubt.py).
    can_doubt = True

    def __init__(self, configuration_set: str | None) -> None:
        self.configuration_set = configuration_set

    async def send(
        self,
        mail: Mail,
        aws: AwsClients,
        log: FilteringBoundLogger,
        call: CallUnderWay | None = None,
    ) -> str | None:
        destination: dict[str, list[str]] = {"ToAddresses": list(mail.to)}
        if mail.cc:
            destination["CcAddresses"] = list(mail.cc)
        if mail.bcc:
            destination["BccAddresses"] = list(mail.bcc)
        body: dict[str, Any] = {"Text": {"Data": mail.text, "Charset": "UTF-8"}}
        if mail.html is not None:
            body["Html"] = {"Data": mail.html, "Charset": "UTF-8"}
        request: dict[str, Any] = {
            "FromEmailAddress": mail.sender,
            "Destination": destination,
            "Content": {
                "Simple": {"Subject": {"Data": mail.subject, "Charset": "UTF-8"}, "Body": body}
            },
        }
        if mail.reply_to:
            request["ReplyToAddresses"] = list(mail.reply_to)
        if self.configuration_set is not None:
            request["ConfigurationSetName"] = self.configuration_set
        ses = await aws.sender("sesv2")
        response = await ses.send_email(**request)
        log.info("email sent", transport="ses", ses_message_id=response.get("MessageId"))
        return None  # SES takes a mail for every recipient, or refuses it


class RefusedForNow(TransientError):
    """The server took the mail for some recipients (``accepted``) and refused others for now
    (4xx to RCPT TO): retried for those alone, the others recorded as sent so they do not get
    it twice (:meth:`EmailHandler._send_rest`)."""

    def __init__(self, message: str, accepted: Sequence[str]) -> None:
        super().__init__(message)
        self.accepted = tuple(accepted)


class ReplyLost(TransientError):
    """The server was sent the message (after its 354 to DATA) and its reply never came: the
    connection was lost, or the reply outlasted the timeout. The server may have taken the
    mail: the handler's ``in_doubt`` decides (a digest's too)."""


class _Smtp(aiosmtplib.SMTP):
    """aiosmtplib's client, marking the span of the message on ``call``: what comes before the
    server's 354 to DATA (the connection, the login, the envelope, DATA itself) cannot send a
    mail; from the 354 until the server's reply, a cut-off or a lost connection may leave one
    sent."""

    def __init__(self, call: CallUnderWay | None, **options: Any) -> None:
        super().__init__(**options)
        self.call = call
        self.message_sent = False  # the 354 came: the message went, or was going, out

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109 (aiosmtplib's)
    ) -> SMTPResponse:
        """DATA in its two steps, the message sent as aiosmtplib sends it, so that the span
        starts at the 354: a connection lost before it cannot have delivered anything."""
        timeout = self.timeout if timeout is Default.token else timeout
        go_ahead = await self.execute_command(b"DATA", timeout=timeout)
        if go_ahead.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(go_ahead.code, go_ahead.message)
        self.message_sent = True
        if self.call is not None:
            self.call.started()
        if isinstance(message, str):
            message = message.encode("ascii")
        response = await self._message(message, timeout)
        if self.call is not None:
            self.call.answered()
        return response

    async def _message(self, message: bytes, within: float | None) -> SMTPResponse:
        """Send ``message`` after the 354, dot-stuffed and ended as aiosmtplib does; its reply."""
        # Lone CR and LF as CRLF, ended by one, dot-stuffed (aiosmtplib 4's and 5's constants;
        # 5's helper that does the first two is not in 4, which the floor allows)
        lines = LINE_ENDINGS_REGEX.sub(b"\r\n", message)
        if not lines.endswith(b"\r\n"):
            lines += b"\r\n"
        body = PERIOD_REGEX.sub(b"..", lines) + b".\r\n"
        if self.protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        try:
            self.protocol.write(body)
            response = await self.protocol.read_response(timeout=within)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()  # as aiosmtplib's data() does: the connection is out of step
            raise
        if response.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response


@dataclasses.dataclass(slots=True, kw_only=True)
class SmtpTransport:
    """SMTP through aiosmtplib: STARTTLS, TLS or plain, with optional authentication.

    SMTP replies decide retries: 4xx is transient, 5xx permanent.
    """

    host: str
    port: int
    security: str
    username: str | None
    password: str | None = dataclasses.field(repr=False)  # a secret: never in a repr or a log
    timeout: float
    validate_certs: bool
    cert_bundle: str | None

    @property
    def secrets(self) -> set[str]:
        """What of the login a server's reply may quote back: the password, and the password as
        AUTH LOGIN and AUTH PLAIN send it (base64). Masked in every reason and log line."""
        if not self.password:
            return set()
        plain = f"\0{self.username or ''}\0{self.password}"
        return {
            self.password,
            base64.b64encode(self.password.encode()).decode(),
            base64.b64encode(plain.encode()).decode(),
        }

    def message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        # Folded by us, as the Subject: the standard library's folding of a name lost spaces
        # where it broke the line, and wrote a name with a comma unquoted (two addresses).
        message["From"] = FoldedAddresses("From", [mail.sender])
        message["To"] = FoldedAddresses("To", mail.to)
        if mail.cc:
            message["Cc"] = FoldedAddresses("Cc", mail.cc)
        if mail.reply_to:
            message["Reply-To"] = FoldedAddresses("Reply-To", mail.reply_to)
        # Folded by us: the standard library's folding of a long subject loses or adds spaces.
        message["Subject"] = FoldedSubject(mail.subject)
        message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = mail.message_id
        message.set_content(mail.text)
        if mail.html is not None:
            message.add_alternative(mail.html, subtype="html")
        return message

    async def send(
        self,
        mail: Mail,
        aws: AwsClients,
        log: FilteringBoundLogger,
        call: CallUnderWay | None = None,
    ) -> str | None:
        client = _Smtp(
            call,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            timeout=self.timeout,
            validate_certs=self.validate_certs,
            cert_bundle=self.cert_bundle,
        )
        try:
            async with client:  # as aiosmtplib.send() does, the message marked
                refused, reply = await self._send(client, mail)
        except (aiosmtplib.SMTPException, ssl.SSLError) as exc:  # STARTTLS's raises its own
            raise self._failure(exc, client.message_sent) from exc
        log.info(
            "email sent",
            transport="smtp",
            server=self.host,
            recipients=len(mail.recipients) - len(refused),
            reply=mask_secrets(reply, self.secrets),
        )
        return self._refused(mail, refused, log) if refused else None

    def _refused(
        self, mail: Mail, refused: dict[str, SMTPResponse], log: FilteringBoundLogger
    ) -> str:
        """After the others took the mail: those refused for good (5xx) are logged, never
        sent again, and said in the note returned for the handler run (its ``last_error``,
        masked as the log is); any refused for now (4xx) raise :class:`RefusedForNow`, to be
        retried alone."""
        said = {
            rcpt: mask_secrets(f"{r.code} {r.message}", self.secrets) for rcpt, r in refused.items()
        }
        log.warning("some recipients were refused", refused=said)
        later = [rcpt for rcpt, r in refused.items() if 400 <= r.code < 500]
        if later:
            accepted = [rcpt for rcpt in mail.recipients if rcpt not in refused]
            detail = "; ".join(f"{rcpt}: {said[rcpt]}" for rcpt in later)
            raise RefusedForNow(
                mask_secrets(
                    f"SMTP server {self.host} took the mail for {len(accepted)} recipient(s) and "
                    f"refused {len(later)} for now ({detail}): tried again for those alone",
                    self.secrets,
                ),
                accepted,
            )
        # Every other recipient has the mail (from this try, or one before it)
        everyone = len(mail.recipients) + len(mail.sent_to)
        lost = ", ".join(f"{mask_email(rcpt)} ({redact(said[rcpt])})" for rcpt in refused)
        sent = f"sent to {everyone - len(refused)} of {everyone} recipients"
        return _one_line(f"{sent}; refused for good: {lost}", 1000)

    async def _send(self, client: _Smtp, mail: Mail) -> tuple[dict[str, SMTPResponse], str]:
        """Send ``mail`` on the connected ``client``. aiosmtplib asks for SMTPUTF8 by the
        envelope's addresses alone: with those in ASCII, a Reply-To with other than ASCII before
        its @ went as an encoded word, an address no one has; it is sent in UTF-8 here."""
        message, sender = self.message(mail), bare_address(mail.sender)
        envelope = (sender, *mail.recipients)
        replies = [bare_address(a) for a in mail.reply_to]
        if not all(a.isascii() for a in envelope) or all(a.isascii() for a in replies):
            return await client.send_message(message, sender=sender, recipients=mail.recipients)
        if client.is_ehlo_or_helo_needed:  # as send_message does
            await client.ehlo()
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        options = ["SMTPUTF8"]
        if eight_bit := client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        flat = flatten_message(message, utf8=True, cte_type="8bit" if eight_bit else "7bit")
        return await client.sendmail(sender, mail.recipients, flat, mail_options=options)

    def _failure(
        self, exc: aiosmtplib.SMTPException | ssl.SSLError, message_sent: bool
    ) -> TransientError | PermanentError:
        """What a failed send raises: :class:`ReplyLost` once the message went out without
        its reply, else :func:`smtp_outcome`."""
        if message_sent and isinstance(
            exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError
        ):
            lost = mask_secrets(str(exc), self.secrets)
            return ReplyLost(
                f"SMTP server {self.host}:{self.port}: the message was sent and the server's "
                f"reply never came ({lost}): the server may have taken it"
            )
        return smtp_outcome(exc, self.host, self.port, self.secrets)


_UNREACHED = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
)


_OUT_OF_DATE = frozenset({CERT_NOT_YET_VALID, CERT_HAS_EXPIRED})


def _tls_problem(exc: BaseException) -> str | None:
    """What a TLS failure (``exc`` or its cause) says of the settings, or None for no TLS one:
    a certificate for another name than host's, out of its validity, or one this machine does
    not trust, or TLS spoken to a port that speaks none."""
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if (
        isinstance(cause, ssl.SSLCertVerificationError)
        and cause.verify_code in CERT_FOR_ANOTHER_NAME
    ):
        # Trusted, and for another name: cert_bundle, which may hold it already, cannot help
        return (
            f"the server's certificate is not for the name in host ({cause.verify_message}): "
            "set host to a name the certificate is for, or give the server a certificate for "
            "that name"
        )
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_code in _OUT_OF_DATE:
        return (
            f"the server's certificate is out of its validity ({cause.verify_message}): renew "
            "it on the server, or set this machine's clock right"
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"the server's certificate is not trusted ({cause.verify_message or cause.reason}): "
            "name its CA's PEM file in cert_bundle"
        )
    if isinstance(cause, ssl.SSLError) and cause.reason in NOT_TLS:
        return (
            f"the TLS handshake failed ({cause.reason}): the server at that port does not speak "
            'TLS at once; use security = "starttls" (port 587) or "none" (port 25), or its TLS '
            "port"
        )
    return None


def _closed_at_once(exc: BaseException) -> str | None:
    """How the server hung up on a connection it had just taken, before any greeting (a
    container's or a proxy's port with no server behind it, an allow list that leaves this
    host out), or None when it did not."""
    cause = exc.__cause__
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(
        cause, aiosmtplib.SMTPServerDisconnected | ConnectionResetError
    ):
        return cause.strerror or str(cause)  # "Unexpected EOF received" has no strerror
    return None


def smtp_problem(exc: BaseException, secrets: Iterable[str] = ()) -> str | None:
    """What an SMTP failure says of the settings, with the fix, for the failures the server's
    own words do not explain: TLS (:func:`_tls_problem`), an answer that is not SMTP, no
    greeting, a connection the server closed. None for the others. The worker's reason and
    ``doctor``'s row both say it after ``SMTP server host:port:``."""
    if (tls := _tls_problem(exc)) is not None:
        return tls
    if isinstance(exc, aiosmtplib.SMTPNotSupported) and "SMTPUTF8" in str(exc):
        return (
            "the server does not offer SMTPUTF8, which an address with other than ASCII before "
            "its @ needs: use an ASCII address, or a server with SMTPUTF8"
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code < 0:
        # aiosmtplib's -1: the answer is no SMTP reply (an SSH banner, an HTTP server's page)
        said = mask_secrets(exc.message.partition(": ")[2].strip(), secrets)[:60]
        return f"the answer is not SMTP (it began {said!r}): check port and security"
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError) and "ready message" in str(exc):
        # Connected, and no greeting came: an HTTP server, or TLS waiting for a handshake
        return f'{exc}: is the port an SMTP server\'s, and security right (port 465 is "tls")?'
    if (how := _closed_at_once(exc)) is not None:
        return (
            f"the server closed the connection before its greeting ({how}): check host and "
            "port (a container's or proxy's port with no SMTP server behind it does this), "
            "and that the server takes connections from this host"
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return (
            f"the server closed the connection after its greeting ({exc}): its log says why "
            "it hangs up on this client (a limit on connections or on what it accepts)"
        )
    return None


def smtp_outcome(
    exc: aiosmtplib.SMTPException | ssl.SSLError,
    host: str,
    port: int,
    secrets: Iterable[str] = (),
) -> TransientError | PermanentError:
    """What an SMTP failure makes of the message: retried or quarantined. ``doctor`` asks the
    same, so what it says of a failure is what the worker does with it. ``secrets`` (the
    transport's) are masked in the reason: a server may quote the login back in a reply
    (``535 bad credentials alerts:<password>``)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({refusal.code for refusal in exc.recipients})
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        text = mask_secrets(f"SMTP server {host} refused every recipient ({detail})", secrets)
        # One refused for now (4xx) may take it on the next try; those refused for good are
        # refused again then, and the mail goes to the rest ("some recipients were refused").
        if any(400 <= code < 500 for code in codes):
            return TransientError(text)
        return PermanentError(text)
    if (problem := smtp_problem(exc, secrets)) is not None:
        # Retried: the server may be fixed (or come back), as ever; one without SMTPUTF8 is
        # not: the address is the settings'.
        lacks = isinstance(exc, aiosmtplib.SMTPNotSupported)
        return (PermanentError if lacks else TransientError)(
            f"SMTP server {host}:{port}: {problem}"
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"SMTP server {host} answered {exc.code} {exc.message}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            text += (
                " to the login: check username and the password (password, or password_env's "
                "variable)"
            )
        text = mask_secrets(text, secrets)
        return PermanentError(text) if 500 <= exc.code < 600 else TransientError(text)
    text = mask_secrets(f"SMTP server {host}:{port}: {exc}", secrets)
    if isinstance(exc, _UNREACHED):  # refused, reset or timed out: it may be back soon
        return TransientError(text)
    # The server lacks what the settings ask for (STARTTLS, AUTH): fix the settings.
    return PermanentError(f"{text} (check security, port and login)")


# -- the handler --------------------------------------------------------------------------------


def _one_line(text: str, limit: int = 250) -> str:
    """A header value: one line (no header injection), without control characters (a NUL or
    an ESC in a Subject), its bidi controls and lone surrogates U+FFFD as in the body (a
    value's U+202E read the rest of the Subject backwards), cut to ``limit`` characters."""
    return cut(multi_line(one_line(text)), limit)


def _payload_section(title: str, value: Any, limit: int) -> str:
    """A payload as JSON, for the body: its line separators, NEL, DEL, C1 and bidi controls
    and lone surrogates escaped as JSON's C0 controls are (:func:`json_lines`), so that it
    reads back as the value; cut to ``limit`` characters, never inside an escape."""
    text = json_lines(value)
    if len(text) > limit:
        kept = json_cut(text, limit)
        text = kept + f"\n… (cut at {len(kept)} of {len(text)} characters)"
    return f"{title}:\n{text}"


class EmailHandler(storm.Notifier):
    """Sends one message for a record, or for a window's digest."""

    def __init__(
        self,
        name: str,
        *,
        transport: Transport,
        sender: str,
        to: Sequence[str],
        cc: Sequence[str],
        bcc: Sequence[str],
        reply_to: Sequence[str],
        subject: Template,
        text: Template,
        html: Template | None,
        digest_subject: Template,
        digest_text: Template,
        include_payloads: bool,
        payload_limit: int,
        stack_lines: int,
        storm: storm.StormPolicy,
        in_doubt: InDoubt = RESEND,
    ) -> None:
        self.name = name
        self.in_doubt = in_doubt
        self.transport = transport
        # SMTP's own timeout; the worker warns at start when handler_timeout is shorter.
        self.call_timeout = transport.timeout if isinstance(transport, SmtpTransport) else None
        self.sender = sender
        self.to, self.cc, self.bcc = tuple(to), tuple(cc), tuple(bcc)
        self.reply_to = tuple(reply_to)
        self.subject = NonBlank(subject, DEFAULT_SUBJECT)
        self.text = NonBlank(text, DEFAULT_TEXT)
        self.html = html
        self.html_warned = False
        self.digest_subject = NonBlank(
            digest_subject, DEFAULT_DIGEST_SUBJECT, allowed=DIGEST_FIELDS
        )
        self.digest_text = NonBlank(digest_text, DEFAULT_DIGEST_TEXT, allowed=DIGEST_FIELDS)
        self.include_payloads = include_payloads
        self.payload_limit = payload_limit
        self.stack_lines = stack_lines
        self.storm = storm

    @property
    def needs_smtputf8(self) -> bool:
        """Whether an address has other than ASCII before its @: sent only by a server with
        SMTPUTF8 (``doctor`` asks)."""
        addresses = (self.sender, *self.to, *self.cc, *self.bcc, *self.reply_to)
        return not all(bare_address(a).isascii() for a in addresses)

    def _mail(self, subject: str, text: str, html: str | None, about: str) -> Mail:
        digest = hashlib.sha256(f"{self.name}\n{about}".encode()).hexdigest()[:40]
        domain = bare_address(self.sender).rpartition("@")[2]
        return Mail(
            sender=self.sender,
            to=self.to,
            cc=self.cc,
            bcc=self.bcc,
            reply_to=self.reply_to,
            subject=_one_line(subject),
            text=text,
            html=html,
            message_id=f"<{digest}@{domain}>",
        )

    def _html(self, fields: dict[str, Any], log: FilteringBoundLogger) -> str | None:
        """The HTML part, or None: without ``html``, or when it renders blank (a missing value
        alone, empty tags), which a mail reader would show in the text's place (a warning
        names the setting, once)."""
        if self.html is None:
            return None
        html = self.html.render(fields)
        if shows_anything(html, markup=True):
            return html
        if not self.html_warned:
            self.html_warned = True
            log.warning(
                "template rendered blank: the mail was sent with its text alone",
                setting=self.html.where,
            )
        return None

    async def _send_rest(
        self,
        mail: Mail,
        send: Callable[[Mail], Awaitable[str | None]],
        store: Store,
        key: str,
        owner: str,
    ) -> str | None:
        """``send`` ``mail`` to the recipients an earlier try left out (refused for now), each
        recipient that took it recorded for ``key`` (as ``NAME#address``) when others were
        refused for now, so that the retry sends it to those alone. Returns the transport's
        note (recipients refused for good), or None."""
        if isinstance(self.transport, SmtpTransport) and len(mail.recipients) > 1:
            completed = await store.completed_handlers(key)
            sent = frozenset(r for r in mail.recipients if f"{self.name}#{r}" in completed)
            mail = dataclasses.replace(mail, sent_to=sent)
        if not mail.recipients:  # every one recorded: the run stopped before its completion
            return None
        try:
            return await send(mail)
        except RefusedForNow as exc:
            for rcpt in exc.accepted:
                await store.complete_handler(key, f"{self.name}#{rcpt}", owner)
            raise

    async def notify(self, message: DecodedMessage, context: HandlerContext) -> None:
        fields = record_fields(message, context, stack_lines=self.stack_lines)
        text = self.text.render(fields, context.log)
        html = self._html(fields, context.log)
        if self.include_payloads:
            sections = [
                _payload_section("Request payload", message.request_payload, self.payload_limit),
                _payload_section("Response payload", message.response_payload, self.payload_limit),
            ]
            text = text.rstrip("\n") + "\n\n" + "\n\n".join(sections) + "\n"
            if html is not None:
                html += "".join(f"<pre>{html_module.escape(s)}</pre>" for s in sections)
        subject = self.subject.render(fields, context.log)
        mail = self._mail(subject, text, html, about=context.key)
        what = f"email to {len(mail.to) + len(mail.cc) + len(mail.bcc)} recipient(s)"
        can_doubt = getattr(self.transport, "can_doubt", False)
        try:
            # SES's whole call may act; SMTP marks its message from DATA's 354 (a reply lost
            # there is ReplyLost).
            with sending(context, self.in_doubt, what, started=can_doubt) as call:
                delivery = delivery_of(context)
                # Recipients refused for good: the worker keeps the note in the handler run
                delivery.in_doubt = await self._send_rest(
                    mail,
                    lambda rest: self.transport.send(rest, delivery.aws, context.log, call),
                    delivery.store,
                    context.key,
                    delivery.owner,
                )
        except Exception as exc:  # noqa: BLE001 - raised again unless in doubt
            self._settle_lost(what, exc, can_doubt, context, context.log)

    def _settle_lost(
        self,
        what: str,
        exc: Exception,
        can_doubt: bool,
        context: HandlerContext | None,
        log: FilteringBoundLogger,
    ) -> None:
        """Settle by ``in_doubt`` the send ``what`` whose answer may be lost (a reply that
        never came, a transport's call in doubt); raise any other error again."""
        if isinstance(exc, ReplyLost):
            self.settle(what, exc.__cause__ or exc, context=context, log=log)
        elif can_doubt and is_in_doubt(exc):
            self.settle(what, exc, context=context, log=log)
        else:
            raise exc

    async def send_digest(self, digest: storm.Digest, context: JobContext) -> None:
        fields = digest.fields()
        mail = self._mail(
            self.digest_subject.render(fields, context.log),
            self.digest_text.render(fields, context.log),
            None,
            about=context.job.key,
        )

        what = f"digest email to {len(mail.to) + len(mail.cc) + len(mail.bcc)} recipient(s)"
        can_doubt = getattr(self.transport, "can_doubt", False)
        step = f"{self.name}#email"

        async def send_rest() -> None:
            # Recipients refused for good are in the log: a digest has no handler run of its
            # own. A reply that never came is in doubt, as a record's: in_doubt decides.
            try:
                # Marked as the job's call (the whole job): cut off by the worker, in_doubt
                # decides too.
                with sending(None, self.in_doubt, what, started=can_doubt) as call:
                    await self._send_rest(
                        mail,
                        lambda rest: self.transport.send(rest, context.aws, context.log, call),
                        context.store,
                        context.job.key,
                        context.owner,
                    )
            except Exception as exc:  # noqa: BLE001 - raised again unless in doubt
                self._settle_lost(what, exc, can_doubt, None, context.log)

        async def send() -> None:
            await storm.retry_digest(send_rest, context)

        completed = await context.store.completed_handlers(context.job.key)
        await storm.send_once(
            context.store,
            context.job.key,
            step,
            context.owner,
            send,
            completed=completed,
        )


def _password(parsed: EmailOptions, name: str) -> str | None:
    """The login's password, None without one. An empty one is refused: no server takes it,
    so every mail would be refused at its login and quarantined, the reason naming no setting
    (a secret not mounted into the container, ``SMTP_PASSWORD=`` in an env file)."""
    if parsed.password is not None:
        if not parsed.password.get_secret_value():
            raise ConfigError(
                f"handlers.{name}.password: empty: give the password, or remove username and "
                "password to send without a login"
            )
        return parsed.password.get_secret_value()
    if parsed.password_env:
        where = f"handlers.{name}.password_env"
        return environment.required(parsed.password_env, where, give="the password")
    return None


def build(name: str, options: dict[str, Any], settings: Settings) -> EmailHandler:
    parsed = parse_options(EmailOptions, name, options)
    transport: Transport
    if parsed.transport == "ses":
        transport = SesTransport(parsed.configuration_set)
    else:
        assert parsed.host is not None  # checked by EmailOptions
        transport = SmtpTransport(
            host=parsed.host,
            port=parsed.port or SMTP_PORTS[parsed.security],
            security=parsed.security,
            username=parsed.username,
            password=_password(parsed, name),
            timeout=parsed.timeout,
            validate_certs=parsed.validate_certs,
            cert_bundle=parsed.cert_bundle,
        )

    def template(setting: str, text: str, **kwargs: Any) -> Template:
        return Template.compile(text, where=f"handlers.{name}.{setting}", **kwargs)

    return EmailHandler(
        name,
        transport=transport,
        sender=parsed.sender,
        to=parsed.to,
        cc=parsed.cc,
        bcc=parsed.bcc,
        reply_to=parsed.reply_to,
        subject=template("subject", parsed.subject),
        text=template("text", parsed.text, body=True),
        html=(
            template("html", parsed.html, escape=html_module.escape, body=True)
            if parsed.html is not None
            else None
        ),
        digest_subject=template(
            "digest_subject", parsed.digest_subject, allowed=storm.DIGEST_FIELDS
        ),
        digest_text=template(
            "digest_text", parsed.digest_text, allowed=storm.DIGEST_FIELDS, body=True
        ),
        include_payloads=parsed.include_payloads,
        payload_limit=parsed.payload_limit,
        stack_lines=parsed.stack_lines,
        storm=parsed.storm,
        in_doubt=parsed.in_doubt,
    )
