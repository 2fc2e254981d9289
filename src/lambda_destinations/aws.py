"""AWS clients (aiobotocore), one session per process, opened and closed with the worker."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lambda_destinations._lifetime import Lifetime
from lambda_destinations._version import version
from lambda_destinations.config import ENV_PREFIX, AccountRole, Settings
from lambda_destinations.errors import ConfigError, LambdaDestinationsError
from lambda_destinations.redact import mask_url

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from botocore.exceptions import ClientError

    from lambda_destinations.retrying import AccountRefusal


def _single_attempt() -> AioConfig:
    """botocore's retries off: a request is sent once."""
    from aiobotocore.config import AioConfig

    return AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})


NO_CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role"
)

# Where botocore got the credentials from (its provider's name, else the environment that
# chose it), and what to check there.
_SOURCES = {
    "container-role": (
        "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI)",
        "check that the ECS agent (or the EKS Pod Identity agent) answers there, and "
        "AWS_CONTAINER_AUTHORIZATION_TOKEN or the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "
        "names",
    ),
    "assume-role-with-web-identity": (
        "the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)",
        "check that the token file is mounted and readable (the pod's service account) and "
        "that the role trusts it",
    ),
    "custom-process": (
        "the profile's credential_process",
        "run it by hand: it must exit 0 and print JSON with Version 1, AccessKeyId, "
        "SecretAccessKey (and SessionToken, Expiration)",
    ),
    "sso": ("AWS SSO", "run `aws sso login` with the same profile"),
    "profile": ("the AWS profile", "fix AWS_PROFILE or the profile in the AWS config file"),
}


def _credentials_source(exc: BaseException) -> str:
    """The name of the credential source ``exc`` came from (see _SOURCES)."""
    provider = getattr(exc, "kwargs", {}).get("provider")
    if provider in _SOURCES:
        return str(provider)
    from botocore.exceptions import SSOError, TokenRetrievalError

    if isinstance(exc, (SSOError, TokenRetrievalError)):
        return "sso"
    env = os.environ
    if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
    ):
        return "container-role"
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "assume-role-with-web-identity"
    # JSONDecodeError: a profile's credential_process printed what is not JSON.
    return "custom-process" if isinstance(exc, ValueError) else "profile"


class CredentialsUnavailable(ConfigError):
    """The AWS credentials could not be got: ``problem`` (the source and its error, redacted:
    no key is in it) and ``fix``."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix

    @classmethod
    def of(cls, exc: BaseException) -> CredentialsUnavailable:
        """What ``exc``, raised while getting the credentials, says of their source."""
        from lambda_destinations.retrying import first_line

        source, fix = _SOURCES[_credentials_source(exc)]
        if source == "the AWS profile" and (profile := os.environ.get("AWS_PROFILE")):
            source = f"the AWS profile {profile!r} (AWS_PROFILE)"
        return cls(
            f"cannot get the AWS credentials from {source} ({first_line(exc, typed=True)})", fix
        )


def refuse_unreadable_json(
    operation_model: Any, response_dict: dict[str, Any], *, empty: bool = True, **_: Any
) -> bytes | None:
    """botocore's ``before-parse`` hook for a JSON-protocol service (SQS, CloudWatch Logs):
    refuse a 2xx answer whose body is not JSON (a captive portal's page, a proxy's), as its
    XML parser refuses one that is not XML (retrying.UnreadableJson, a ResponseParserError).
    ``empty``: an empty body is taken (botocore's ``{}``, as AWS's own empty answer reads).
    Returns the body it checked, stripped: None (or empty) when it checked none.

    botocore reads such a body as ``{"message": body}``: a ReceiveMessage with no messages, a
    GetQueueAttributes with no attributes (a redrive policy removed), and no error anywhere.
    """
    status = int(response_dict.get("status_code") or 0)
    body = response_dict.get("body")
    if not 200 <= status < 300 or operation_model.has_streaming_output:
        return None
    if not isinstance(body, bytes) or (not (text := body.strip()) and empty):
        return None
    # Every answer of these services is one JSON object. Its ends, not a parse: botocore
    # parses the body next, and a second parse would cost every receive its time again.
    if text[:1] != b"{" or text[-1:] != b"}":
        from lambda_destinations.retrying import UnreadableJson

        reason = "not a JSON object" if text else "an empty body"
        raise UnreadableJson(reason=reason, body=body.decode(errors="replace"))
    return text


# A JSON object's first key, when the key has no escape in it.
_FIRST_KEY = re.compile(rb'\{\s*"([^"\\]*)"')


def _json_check() -> Callable[..., None]:
    """The ``before-parse`` hook of a JSON-protocol client (SQS, CloudWatch Logs, KMS): a 2xx
    answer must be a JSON object (:func:`refuse_unreadable_json`) with no key, or with one at
    least of the operation's answer (botocore's model), which botocore keeps alone: a proxy's
    ``{"status": "ok"}`` was a ReceiveMessage with no messages, and a queue empty for ever.

    One such key is enough: AWS may add a key an older botocore does not know, and botocore
    reads that answer all the same. A real answer's first key is one of them: a look at it,
    not a second parse of every receive's answer, takes those."""
    members: dict[str, frozenset[str]] = {}  # by operation: made once, one lookup a call

    def refuse_json_not_the_answer(
        operation_model: Any, response_dict: dict[str, Any], **_: Any
    ) -> None:
        if not (text := refuse_unreadable_json(operation_model, response_dict)):
            return  # no 2xx, or an empty body: AWS's own empty answer, as botocore reads it
        name = operation_model.name
        if (keys := members.get(name)) is None:
            keys = members[name] = _answer_keys(operation_model)
        first = _FIRST_KEY.match(text)
        if first is None or first[1].decode(errors="replace") not in keys:
            _refuse_foreign_keys(name, keys, text)

    return refuse_json_not_the_answer


def _answer_keys(operation_model: Any) -> frozenset[str]:
    """The keys of ``operation_model``'s answer, as botocore's JSON parser reads them: each
    member's (by its name on the wire); none for an operation that answers nothing."""
    shape = operation_model.output_shape
    if shape is None:
        return frozenset()
    return frozenset(m.serialization.get("name", k) for k, m in shape.members.items())


def _refuse_foreign_keys(operation: str, members: frozenset[str], text: bytes) -> None:
    """Refuse ``text``, a JSON object answering ``operation`` whose first key is none of
    ``members`` (its answer's), unless it has no key (``{}``) or another key is one."""
    import json

    from lambda_destinations.retrying import UnreadableJson

    try:
        keys = json.loads(text)
    except ValueError:  # its ends are a JSON object's, the rest is not JSON
        keys = None
    if isinstance(keys, dict) and (not keys or not members.isdisjoint(keys)):
        return
    if isinstance(keys, dict):
        reason = f"{next(iter(keys))[:40]!r}, a key no {operation} answer has"
    else:
        reason = "not a JSON object"
    raise UnreadableJson(reason=reason, body=text.decode(errors="replace"))


def _body_expected(operation_model: Any) -> bool:
    """Whether a REST operation's answer is a document (a JSON object, an XML element): its
    output has a member in the body (not only headers, nor a raw payload: Lambda Invoke's and
    S3 GetObject's, streamed; S3 GetBucketPolicy's JSON)."""
    shape = operation_model.output_shape
    if shape is None:
        return False
    payload = shape.serialization.get("payload")
    if payload is not None:
        return bool(shape.members[payload].type_name == "structure")
    return any("location" not in member.serialization for member in shape.members.values())


def _rest_check(refuse: Callable[[Any, dict[str, Any]], None]) -> Callable[..., None]:
    """The ``before-parse`` hook of a REST client: ``refuse`` a 2xx answer that is not AWS's,
    for an operation whose output is in the body (:func:`_body_expected`). botocore reads a
    page as that operation's empty answer: a SendEmail (SES v2) a portal answered was a sent
    mail, a GetBucketNotificationConfiguration (S3) a bucket that notifies nothing."""
    expected: dict[str, bool] = {}  # by operation: one lookup a call once it is known

    def refuse_unreadable_rest(
        operation_model: Any, response_dict: dict[str, Any], **_: Any
    ) -> None:
        name = operation_model.name
        if (body := expected.get(name)) is None:
            body = expected[name] = _body_expected(operation_model)
        if body:
            refuse(operation_model, response_dict)

    return refuse_unreadable_rest


def _refuse_unreadable_rest_json(operation_model: Any, response_dict: dict[str, Any]) -> None:
    refuse_unreadable_json(operation_model, response_dict, empty=False)


# An XML document's root element (its name, then the rest of its start tag): after a byte
# order mark, a declaration, blanks.
_XML_ROOT = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?<([\w:.-]+)([^>]*)")

# The namespace of the root element of every XML answer of S3's (moto's too): a page in its
# place (XHTML's is http://www.w3.org/1999/xhtml) has another, or none.
_S3_NAMESPACE = re.compile(rb"""\sxmlns\s*=\s*["']http://s3\.amazonaws\.com/doc/2006-03-01/?["']""")


def _refuse_unreadable_s3(operation_model: Any, response_dict: dict[str, Any]) -> None:
    """A 2xx answer of S3's (REST-XML) whose output is in the body: its root element must be
    in S3's namespace, or be an ``<Error>`` (S3's error in a 200, which botocore turns into
    a 500 itself). botocore reads any other XML (a captive portal's XHTML page) as the
    operation's empty answer, and an empty body too (retrying.UnreadableXml).

    A 5xx's body, when it has one, is S3's ``<Error>``: botocore makes a 500 of a 2xx page
    that is not XML (its before-parse hook runs first), and said it was S3's error."""
    status = int(response_dict.get("status_code") or 0)
    body = response_dict.get("body")
    if not isinstance(body, bytes) or not (200 <= status < 300 or status >= 500):
        return  # a streamed body is an object's bytes: anything; a 3xx or 4xx, botocore's
    root = _XML_ROOT.match(body)
    if root is not None and root[1] == b"Error":
        return  # S3's error, botocore's to read
    if status >= 500 and body.strip():
        raise _unreadable_xml("not an answer of S3's", body)
    if status < 300 and (root is None or not _S3_NAMESPACE.search(root[2])):
        reason = "an empty body" if not body.strip() else "not an answer of S3's"
        raise _unreadable_xml(reason, body)


def _unreadable_xml(reason: str, body: object) -> Exception:
    """retrying.UnreadableXml: an answer, ``body``, that is not the service's, for ``reason``."""
    from lambda_destinations.retrying import UnreadableXml

    text = body.decode(errors="replace") if isinstance(body, bytes) else ""
    return UnreadableXml(reason=reason, body=text)


# S3's operations whose answer is in its headers alone, the object's ETag always among them:
# a 2xx with none is a page in S3's place (botocore reads any body as their empty answer).
_S3_ETAG_ANSWERS = frozenset({"PutObject", "UploadPart"})


def _s3_check() -> Callable[..., None]:
    """The ``before-parse`` hook of an S3 client: an answer in the body must be S3's XML
    (:func:`_refuse_unreadable_s3`), an answer with the object's ETag must have one."""
    in_body = _rest_check(_refuse_unreadable_s3)

    def refuse_unreadable_s3(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        if operation_model.name not in _S3_ETAG_ANSWERS:
            in_body(operation_model, response_dict)
            return
        status = int(response_dict.get("status_code") or 0)
        if 200 <= status < 300 and not (response_dict.get("headers") or {}).get("etag"):
            reason = f"no ETag, which S3's answer to {operation_model.name} always has"
            raise _unreadable_xml(reason, response_dict.get("body"))

    return refuse_unreadable_s3


def refuse_unreadable_query(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """botocore's ``before-parse`` hook for a query-protocol service (SNS, SES, STS): a 2xx
    answer's root element must be ``<OperationResponse>``. botocore reads a page that is
    XML (XHTML) with no error: a KeyError of its own where it wants the result, nothing at
    all for an operation with no result (retrying.UnreadableXml, a ResponseParserError)."""
    status = int(response_dict.get("status_code") or 0)
    body = response_dict.get("body")
    if not 200 <= status < 300 or not isinstance(body, bytes) or not body:
        return  # an empty body: botocore's parser refuses it itself
    root = _XML_ROOT.match(body)
    if root is None or root[1] != f"{operation_model.name}Response".encode():
        raise _unreadable_xml(f"not a {operation_model.name}Response", body)


def answer_check(protocol: str, service: str = "") -> Callable[..., None] | None:
    """The ``before-parse`` hook refusing an answer that is not AWS's for a client of
    ``protocol`` (for REST-XML, of S3 alone: its answers' namespace is S3's); None for any
    other (Route 53, CloudFront: not called here)."""
    if protocol == "json":
        return _json_check()
    if protocol == "rest-json":
        return _rest_check(_refuse_unreadable_rest_json)
    if protocol == "query":
        return refuse_unreadable_query
    if protocol == "rest-xml" and service == "s3":
        return _s3_check()
    return None


class AwsClients(Lifetime):
    """Lazily created aiobotocore clients sharing one endpoint override and region.

    Use as ``async with AwsClients(settings) as aws: sqs = await aws.client("sqs")``.
    """

    def __init__(
        self, settings: Settings, *, max_attempts: int = 3, read_timeout: float | None = None
    ) -> None:
        # Imported here: aiobotocore costs a command that imports this module for one helper
        # (``dlq --help``, ``replay --help``) about a tenth of a second of CPU.
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self._settings = settings
        self._session: AioSession = get_session()
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        # A session for each account of ``settings.accounts`` a call was made to, whose
        # credentials are its role's (see _account_session); and the account of our own.
        self._sessions: dict[str, AioSession] = {}
        self._own_account: str | None = None
        # The read timeout must outlast a long poll, or every idle receive would time out;
        # ``read_timeout`` a shorter one for a caller that makes none.
        self._config = AioConfig(
            region_name=settings.resolved_region(),
            connect_timeout=5,
            read_timeout=read_timeout or settings.wait_time + 15,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # A connection for each long poll (held up to wait_time), and beside them one a
            # queue for its deletes and visibility changes, and one a handler slot: a delete
            # that waited for a connection waited for a long poll to end.
            max_pool_connections=max(
                10, settings.concurrency + settings.poller_count() + len(settings.queues) + 4
            ),
            # Our requests are built by code, not typed by people: client-side validation of
            # every parameter is CPU spent on every call for errors the service reports anyway.
            parameter_validation=False,
            # A fixed User-Agent, built once: botocore otherwise rebuilds its structured one
            # on every request, which costs about a tenth of a receive call's CPU.
            user_agent=f"{self._session.user_agent()} lambda-destinations/{version()}",
        )

    @property
    def endpoint_url(self) -> str | None:
        return self._settings.endpoint_url

    @property
    def region(self) -> str | None:
        return self._settings.resolved_region()

    async def client(self, service: str) -> Any:
        """The client for ``service``, created on first use and closed on exit."""
        return await self.client_in(None, service)

    async def sender(self, service: str) -> Any:
        """A client that sends each request once (no botocore retries), for acting calls
        (SNS Publish, SES SendEmail): a resend after a lost answer may repeat the effect, so
        the handler's ``in_doubt`` policy decides it (handlers/in_doubt.py)."""
        return await self.client_in(None, service, send_once=True)

    async def lambda_invoker(self) -> LambdaInvoker:
        """What sends ``Invoke`` (``invoker.invoke(FunctionName=..., ...)``, as a Lambda
        client's), in the function's account, and never twice by itself.

        botocore's retries would send an Invoke again after a read timeout or a dropped
        connection, when Lambda may already have taken it: a second invocation. Callers retry
        only errors Lambda answered (``retrying.answered``) and record the rest as in doubt.
        """
        return LambdaInvoker(self)

    async def client_in(
        self,
        account: str | None,
        service: str,
        *,
        send_once: bool = False,
        region: str | None = None,
    ) -> Any:
        """The client for ``service`` whose calls are made in ``account``: with the
        credentials of the role ``settings.accounts`` names for it (assumed on the first call,
        refreshed by botocore before they expire), else our own. Created once, on first use.
        ``send_once``: botocore's retries off, as :meth:`sender`'s. ``region``: another region
        than the settings' (a function's log group is in the function's region)."""
        own = account is None or account not in self._settings.accounts
        if region == self.region:
            region = None
        key = f"{service}{'-send' if send_once else ''}{'' if own else f'@{account}'}"
        key += f"#{region}" if region else ""
        client = self._clients.get(key)
        if client is None:  # made once: every Invoke of a replay asks for it
            config = self._config.merge(_single_attempt()) if send_once else self._config
            session = self._session if own else self._account_session(str(account))
            try:
                made: Any = await self._stack.enter_async_context(
                    session.create_client(  # region None: the config's, the settings' region
                        service,
                        region_name=region,
                        endpoint_url=self._settings.endpoint_url,
                        config=config,
                    )
                )
            except ValueError as exc:
                raise self._endpoint_refused(exc, service) or exc from None
            model = made.meta.service_model  # resolved_protocol: newer botocore only
            protocol = getattr(model, "resolved_protocol", model.protocol)
            if check := answer_check(protocol, model.service_name):
                made.meta.events.register("before-parse", check)
            client = self._clients[key] = made
        return client

    def _endpoint_refused(self, exc: ValueError, service: str) -> ConfigError | None:
        """The line of botocore's refusal of the endpoint it was to use for ``service`` (a
        bare ValueError, "Invalid endpoint: URL"), naming where it was set: the setting, else
        botocore's own AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE> or the AWS config file;
        None for any other ValueError."""
        url = str(exc).removeprefix("Invalid endpoint: ")
        if url == str(exc):
            return None
        if self._settings.endpoint_url is not None:
            where = self._settings.set_in("endpoint_url")
        else:
            named = sorted(
                name
                for name, value in os.environ.items()
                if name.startswith("AWS_ENDPOINT_URL") and value == url
            )
            where = named[0] if named else "endpoint_url in the AWS config file's profile"
        return ConfigError(
            f"the endpoint {mask_url(url)!r} ({where}) for {service} is not a URL AWS's SDK "
            "takes: give an http:// or https:// URL whose host is a name or an address, such "
            f"as http://127.0.0.1:4566, or unset it ({ENV_PREFIX}ENDPOINT_URL sets one "
            "endpoint for every service)"
        )

    def _account_session(self, account: str) -> AioSession:
        """A session whose credentials are those of ``account``'s role, got with sts:AssumeRole
        by our own credentials; botocore's deferred refreshable credentials assume it on the
        first call and again before the credentials expire."""
        session = self._sessions.get(account)
        if session is not None:
            return session
        from aiobotocore.credentials import (
            AioAssumeRoleCredentialFetcher,
            AioCredentialResolver,
            AioDeferredRefreshableCredentials,
        )
        from aiobotocore.session import get_session
        from botocore.credentials import CredentialProvider
        from botocore.exceptions import NoCredentialsError

        role = self._settings.accounts[account]
        extra = {"RoleSessionName": ROLE_SESSION_NAME}
        if role.external_id is not None:
            extra["ExternalId"] = role.external_id
        own = self._session

        class AssumedRoleProvider(CredentialProvider):  # type: ignore[misc]
            METHOD = "assume-role"

            async def load(self) -> Any:
                source = await own.get_credentials()
                if source is None:  # said as our own calls say it, not an AttributeError
                    raise NoCredentialsError
                fetcher = AioAssumeRoleCredentialFetcher(
                    client_creator=lambda service, **keys: own.create_client(
                        service, endpoint_url=endpoint_url, config=config, **keys
                    ),
                    source_credentials=source,
                    role_arn=role.role_arn,
                    extra_args=extra,
                )
                return AioDeferredRefreshableCredentials(
                    refresh_using=lambda: _assumed(fetcher, account, role), method=self.METHOD
                )

        endpoint_url, config = self._settings.endpoint_url, self._config
        session = get_session()
        session.register_component(
            "credential_provider", AioCredentialResolver([AssumedRoleProvider()])
        )
        self._sessions[account] = session
        return session

    async def account_refusal(
        self, exc: ClientError, account: str | None, function: str
    ) -> AccountRefusal | None:
        """``exc``, Lambda's refusal of an Invoke of ``function`` of ``account``, restated when
        it concerns accounts: the role set for the account is not allowed it, or no role is set
        and the function is not in our own account. None when it does not concern them (the
        refusal is said as it is; one of a role that cannot be assumed is said already)."""
        from lambda_destinations.retrying import (
            CREDENTIAL_CODES,
            DENIED_CODES,
            AccountRefusal,
            code_and_message,
            error_code,
        )

        code = error_code(exc)
        denied = code in DENIED_CODES - CREDENTIAL_CODES
        if isinstance(exc, AccountRefusal) or exc.operation_name != "Invoke":
            return None  # said already (a role not assumed), or not Lambda's answer
        # Lambda answers a caller of another account AccessDeniedException, whether or not
        # the function exists: a function not found is one that is not there.
        if account is None or not denied:
            return None
        role = self._settings.accounts.get(account)
        if role is not None:  # its calls are the role's: a function it may not invoke
            return AccountRefusal(
                exc,
                f"{code_and_message(exc)[1]} (as {role.role_arn}, the role of accounts.{account})",
                f"allow {role.role_arn} lambda:InvokeFunction on {function}",
            )
        own = await self.own_account()
        if own is None or own == account:
            return None
        return AccountRefusal(
            exc,
            f"{function} is in account {account}, and the AWS credentials are account {own}'s",
            no_role_fix(account, own),
        )

    def role_arn(self, account: str | None) -> str | None:
        """The role the accounts table names for ``account``, whose credentials its calls use;
        None when it names none (the credentials' own are used)."""
        role = self._settings.accounts.get(account or "")
        return role.role_arn if role is not None else None

    async def own_account(self) -> str | None:
        """The account of our own credentials (sts:GetCallerIdentity, asked once); None when
        STS does not say. Asked only to explain a refusal: no call of the worker waits on it."""
        if self._own_account is None:
            with contextlib.suppress(Exception):  # the refusal is said as it is, then
                sts = await self.client("sts")
                self._own_account = str((await sts.get_caller_identity())["Account"])
        return self._own_account

    async def check_credentials(self) -> None:
        """Get the AWS credentials now, as the first request would: a source that fails (a
        container credentials endpoint away or answering garbage, a web identity token file
        not mounted, a credential_process that fails, a profile that does not exist) is one
        line naming the source and the fix (CredentialsUnavailable, exit 3), not a traceback,
        nor a wait for SQS that can never end. Credentials that expire stay the session's,
        refreshed by botocore before they do."""
        try:
            credentials = await self._session.get_credentials()
            if credentials is not None:
                await credentials.get_frozen_credentials()
        except Exception as exc:  # noqa: BLE001 - any error of the source, said in one line
            raise CredentialsUnavailable.of(exc) from None
        if credentials is None:
            raise CredentialsUnavailable("no AWS credentials", NO_CREDENTIALS_FIX)

    def credentials_source(self) -> tuple[str, str]:
        """The credential source the session asks, and its fix (see _SOURCES): for a source
        that has not answered, and so raised nothing to tell it by."""
        try:
            profile = self._session.get_scoped_config()
        except Exception:  # noqa: BLE001 - a profile that does not exist: the env decides
            profile = {}
        if "credential_process" in profile:
            return _SOURCES["custom-process"]
        if "sso_session" in profile or "sso_start_url" in profile:
            return _SOURCES["sso"]
        return _SOURCES[_credentials_source(TimeoutError())]

    async def open(self) -> None:
        """Nothing to connect: a client is created on first use."""

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


def no_role_fix(account: str, own: str, *, many: bool = False) -> str:
    """What lets credentials of account ``own`` invoke a function (``many``: functions) of
    ``account``, for which the accounts table names no role."""
    it, where = (
        ("them", "their resource-based policies")
        if many
        else ("it", "the function's resource-based policy")
    )
    return (
        f"set a role of account {account} to assume for {it}: [accounts.{account}] role_arn "
        f'= "arn:aws:iam::{account}:role/NAME" in the TOML file (or {ENV_PREFIX}ACCOUNTS), '
        f"or let account {own} invoke {it} in {where}"
    )


# The name AssumeRole gives our sessions of another account's role (CloudTrail shows it there).
ROLE_SESSION_NAME = "lambda-destinations"


async def _assumed(fetcher: Any, account: str, role: AccountRole) -> Any:
    """The credentials ``fetcher`` gets with sts:AssumeRole of ``role``, the role of
    ``account``: STS's refusal restated (:func:`role_refusal`), and STS not answering (away,
    cut off, timed out) a connection error naming the role (RoleNotAssumed): the call that
    needed them was never sent, so it is in no doubt."""
    from botocore.exceptions import ClientError

    from lambda_destinations.retrying import CONNECTION_ERRORS, RoleNotAssumed, first_line

    try:
        return await fetcher.fetch_credentials()
    except ClientError as exc:
        raise role_refusal(exc, account, role) or exc from exc
    except CONNECTION_ERRORS as exc:  # STS's, not the call's
        raise RoleNotAssumed(
            role_arn=role.role_arn,
            account=account,
            error=first_line(exc),
            endpoint_url=getattr(exc, "kwargs", {}).get("endpoint_url"),
        ) from exc


def role_refusal(exc: ClientError, account: str, role: AccountRole) -> AccountRefusal | None:
    """STS's refusal to let us assume ``role``, the role of ``account``, restated with what to
    fix; None for an error that is no refusal (throttling, an outage: classified as it is)."""
    from lambda_destinations.retrying import (
        CREDENTIAL_CODES,
        DENIED_CODES,
        AccountRefusal,
        code_and_message,
        error_code,
    )

    if error_code(exc) not in DENIED_CODES - CREDENTIAL_CODES:
        return None
    external = ", with its external_id" if role.external_id else ""
    return AccountRefusal(
        exc,
        f"cannot assume {role.role_arn}, the role of accounts.{account}: "
        f"{code_and_message(exc)[1]}",
        f"the role's trust policy must let the worker's role assume it (sts:AssumeRole"
        f"{external}), and the worker's credentials must be allowed sts:AssumeRole on "
        f"{role.role_arn}",
    )


class LambdaInvoker:
    """Lambda's ``Invoke`` (``await invoker.invoke(FunctionName=..., ...)``, as a client's),
    sent in the account and the region of the function its ARN names
    (``AwsClients.client_in``), each request once. A refusal that concerns another account is
    said so (:class:`AccountRefusal`).

    The region is the ARN's: Lambda answers an ARN of another region than its own "Functions
    from 'eu-west-1' are not reachable in this region", and botocore sends every request to
    its client's region whatever the ARN says. A name (or a partial ARN) goes to the settings'
    region, where Lambda reads it."""

    def __init__(self, aws: AwsClients) -> None:
        # Imported here, as aiobotocore is: a command importing this module for one helper
        # loads no record models.
        from lambda_destinations.schemas import function_account, invoke_function_region

        self._aws = aws
        self._account_of = function_account
        self._region_of = invoke_function_region

    async def invoke(self, **params: Any) -> Any:
        from botocore.exceptions import ClientError

        from lambda_destinations.retrying import sent_to_region

        function = str(params.get("FunctionName", ""))
        account = self._account_of(function)
        region = self._region_of(function)
        client = await self._aws.client_in(account, "lambda", send_once=True, region=region)
        try:
            return await client.invoke(**params)
        except ClientError as exc:
            explained = await self._aws.account_refusal(exc, account, function)
            if explained is None:
                sent_to_region(exc, None if region == self._aws.region else region)
                raise
            raise explained from exc


async def invoke_event(
    lambda_client: Any, function_arn: str, payload: bytes, *, qualifier: str | None = None
) -> str:
    """Invoke ``function_arn`` (with ``qualifier``, if given) asynchronously
    (``InvocationType=Event``) with ``payload``; return the new invocation's request id (the
    ``x-amzn-RequestId`` of Lambda's answer, which the invocation's record carries).

    One call: give it ``AwsClients.lambda_invoker()``, which does not retry by itself, and
    retry only errors Lambda answered (``retrying.answered``). Raises whatever the client
    raises.
    """
    extra = {} if qualifier is None else {"Qualifier": qualifier}
    response = await lambda_client.invoke(
        FunctionName=function_arn, InvocationType="Event", Payload=payload, **extra
    )
    stream = response.get("Payload")
    if stream is not None:
        await stream.read()  # an Event invoke answers with an empty body; release the connection
    status = response.get("StatusCode")
    if status != 202:
        raise LambdaDestinationsError(
            f"Lambda answered an asynchronous Invoke of {function_arn} with status {status}, "
            "not 202"
        )
    metadata = response.get("ResponseMetadata", {})
    request_id = metadata.get("RequestId") or metadata.get("HTTPHeaders", {}).get(
        "x-amzn-requestid"
    )
    if not request_id:
        raise LambdaDestinationsError(f"Lambda returned no request id for {function_arn}")
    return str(request_id)


async def all_items(client: Any, operation: str, key: str, **params: Any) -> list[Any]:
    """The items under ``key`` of every page of a listing ``operation`` (botocore's paginator,
    which follows NextToken or NextMarker, whichever the operation uses)."""
    items: list[Any] = []
    async for page in client.get_paginator(operation).paginate(**params):
        items.extend(page.get(key, []))
    return items
