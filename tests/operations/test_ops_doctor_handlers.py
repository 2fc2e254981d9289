"""`doctor` checks each handler the routes name against its endpoint, one broken setting at a
time: SES sender, SES-less SMTP (connect, EHLO, login), SNS SMS, replay targets. Nothing is sent.
SES, SNS and Lambda are the Lambda moto server; SMTP is a real aiosmtpd server."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import re
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from ops_helpers import REGION, cli_through
from test_ops_doctor_cli import Setup, checks_of, errors_of

from processes import free_port
from tcp_proxy import AnswerCutter, aws_error

GOOD_SENDER = "alerts@doctor-good.example.com"
ARN = f"arn:aws:lambda:{REGION}:123456789012:function:{{name}}"
LOGIN = ("alerts", "right-password")


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[tuple[int, _Sink]]:
    """aiosmtpd offering AUTH (plain connection) for LOGIN; yields its port and its mailbox.
    A refused login's reply quotes it back, password and all, as a careless server's does."""
    expected = LoginPassword(LOGIN[0].encode(), LOGIN[1].encode())

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if data == expected:
            return AuthResult(success=True, handled=False)
        said = f"535 5.7.8 bad credentials {data.login.decode()}:{data.password.decode()}"
        return AuthResult(success=False, handled=False, message=said)

    sink = _Sink()
    port = free_port()  # aiosmtpd's controller cannot take port 0
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


@pytest.fixture
def setup(lambda_endpoint, sqlite_url):  # type: ignore[no-untyped-def]
    made = Setup(lambda_endpoint, sqlite_url)
    ses = boto3.client("ses", region_name=REGION, endpoint_url=lambda_endpoint.url)
    ses.verify_email_identity(EmailAddress=GOOD_SENDER)
    try:
        yield made
    finally:
        made.cleanup()


def good_handlers(setup: Setup, smtp: int) -> dict[str, dict[str, Any]]:
    return {
        "mail": {"type": "email", "from": GOOD_SENDER, "to": ["oncall@example.com"]},
        "smtp-mail": {
            "type": "email",
            "transport": "smtp",
            "host": "127.0.0.1",
            "port": smtp,
            "security": "none",
            "username": LOGIN[0],
            "password_env": "DOCTOR_SMTP_PASSWORD",
            "from": GOOD_SENDER,
            "to": ["oncall@example.com"],
        },
        "text": {"type": "sms", "phone_numbers": ["+14155552671"]},
        "again": {"type": "replay", "functions": [f"{setup.prefix}-*"]},
    }


def doctor(
    setup: Setup, handlers: dict[str, dict[str, Any]], more: dict[str, str] | None = None
) -> Any:
    routes = [
        {"condition": "failure", "handlers": ["persist", *handlers]},
        {"condition": "success", "handlers": ["persist", "replay-outcome"]},
    ]
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(routes),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers),
        "DOCTOR_SMTP_PASSWORD": LOGIN[1],
        **(more or {}),
    }
    return setup.doctor(env, "--json")


def test_good_handlers_pass_and_nothing_is_sent(setup: Setup, smtp_port) -> None:
    port, sink = smtp_port

    result = doctor(setup, good_handlers(setup, port))

    assert result.returncode == 0, result.stdout + result.stderr
    rows = {c["check"]: c for c in checks_of(result)}
    for name in ("mail", "smtp-mail", "text", "again"):
        assert rows[f"handler {name}"]["status"] == "ok", rows
    assert all(c["status"] == "ok" for c in rows.values()), rows
    assert "logged in as alerts" in rows["handler smtp-mail"]["detail"]
    assert sink.messages == []


def _unverified_sender(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["mail"]["from"] = "alerts@nobody-verified-this.example.com"
    return "handler mail"


def _smtp_port_1(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["smtp-mail"]["port"] = 1
    return "handler smtp-mail"


def _smtp_wrong_login(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["smtp-mail"].pop("password_env")
    handlers["smtp-mail"]["password"] = "wrong-password"
    return "handler smtp-mail"


def _smtp_starttls_not_offered(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["smtp-mail"]["security"] = "starttls"
    return "handler smtp-mail"


def _opted_out_number(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["text"]["phone_numbers"] = ["+14155552671", "+14155552699"]  # moto: *99 opted out
    return "handler text"


def _replay_target_missing(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["again"]["functions"] = ["no-such-function-*"]
    return "handler again"


def _legacy_function_missing(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["again"]["legacy_function"] = "orders-api-gone"
    return "handler again"


def _webhook_header_line_break(handlers: dict[str, Any], setup: Setup) -> str:
    handlers["hook"] = {
        "type": "webhook",
        "url": "http://127.0.0.1:9/hook",
        "headers": {"X-Token": "abc\r\nX-Evil: 1"},
    }
    return "handler hook"


PLANTS = {
    "SES sender not verified": _unverified_sender,
    "SMTP server on port 1": _smtp_port_1,
    "SMTP login refused": _smtp_wrong_login,
    "SMTP without STARTTLS": _smtp_starttls_not_offered,
    "SMS number opted out": _opted_out_number,
    "replay target missing": _replay_target_missing,
    "legacy function missing": _legacy_function_missing,
    "webhook header with a line break": _webhook_header_line_break,
}


@pytest.mark.parametrize("plant", list(PLANTS), ids=list(PLANTS))
def test_each_broken_handler_setting_is_found(setup: Setup, smtp_port, plant: str) -> None:
    port, sink = smtp_port
    handlers = good_handlers(setup, port)
    broken = PLANTS[plant](handlers, setup)

    result = doctor(setup, handlers)

    assert result.returncode == 1, result.stdout + result.stderr
    errors = errors_of(result)
    assert set(errors) == {broken}, errors
    assert errors[broken]["fix"]
    assert sink.messages == []


def test_an_opted_out_number_is_named_masked_and_its_sms_said_lost(setup: Setup, smtp_port) -> None:
    # given: a number that opted out of SMS beside one that did not
    port, _ = smtp_port
    handlers = good_handlers(setup, port)
    _opted_out_number(handlers, setup)

    # when
    result = doctor(setup, handlers)

    # then: named as logs name it, enough to tell it from the other, not to call it
    detail = errors_of(result)["handler text"]["detail"]
    assert detail.startswith("opted out of SMS: +14*****2699;"), detail
    # and what comes of it: SNS takes the Publish and drops it (the worker sees no error: it
    # acknowledges the record, quarantines nothing)
    assert "delivers nothing" in detail
    assert "quarantined" not in detail
    assert "4155552699" not in result.stdout + result.stderr


@pytest.mark.parametrize("form", ["{name}", "{name}:live", "123456789012:function:{name}", ARN])
def test_a_legacy_function_named_by_arn_or_alias_is_found(setup: Setup, form: str) -> None:
    # doctor took what came before the first ':' for the name: an ARN's was "arn", and a
    # function that exists was reported missing.
    handlers = {"again": {"type": "replay", "legacy_function": form.format(name=setup.function)}}

    result = doctor(setup, handlers)

    assert result.returncode == 0, result.stdout + result.stderr
    row = {c["check"]: c for c in checks_of(result)}["handler again"]
    assert row["status"] == "ok", row


def test_a_legacy_function_of_another_region_is_looked_up_in_that_region(setup: Setup) -> None:
    # given: the function is in us-east-1 (the settings' region) only; legacy_function names
    # one of that name in eu-west-1
    west = f"arn:aws:lambda:eu-west-1:123456789012:function:{setup.function}"
    handlers = {"again": {"type": "replay", "legacy_function": west}}

    # when: before and after eu-west-1 has it
    missing = doctor(setup, handlers)
    setup.endpoint.create_function(setup.function, "eu-west-1")
    found = doctor(setup, handlers)

    # then: missing in eu-west-1 (before: ok, from us-east-1's function of that name, which
    # no replay of it invokes), then found there
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert errors_of(missing)["handler again"]["detail"] == (
        f"no function matches {west} in eu-west-1: replays of them end as errors (Function "
        "not found)"
    )
    assert found.returncode == 0, found.stdout + found.stderr
    row = {c["check"]: c for c in checks_of(found)}["handler again"]
    assert row["status"] == "ok", row


def test_an_ses_configuration_set_that_does_not_exist_is_an_error(setup: Setup) -> None:
    # given: an email handler whose verified sender sends through a configuration set SES
    # does not have (SES refuses each SendEmail that names it)
    named = f"{setup.prefix}-alerts"
    mail = {"type": "email", "from": GOOD_SENDER, "to": ["oncall@example.com"]}
    handlers = {"mail": {**mail, "configuration_set": named}}

    # when: before and after the set is created
    missing = doctor(setup, handlers)
    ses = boto3.client("sesv2", region_name=REGION, endpoint_url=setup.endpoint.url)
    ses.create_configuration_set(ConfigurationSetName=named)
    setup.later.append(lambda: ses.delete_configuration_set(ConfigurationSetName=named))
    found = doctor(setup, handlers)

    # then: an error naming the set, the region and the fix (doctor said nothing of it: every
    # email failed, and was quarantined, with doctor passing), then ok
    assert missing.returncode == 1, missing.stdout + missing.stderr
    row = errors_of(missing)["handler mail: SES configuration set"]
    assert row["detail"].startswith(
        f"{named} does not exist in SES (region {REGION}): every record routed through it fails"
    ), row
    assert row["fix"] == (
        f"create the configuration set {named} in SES (region {REGION}), or fix the handler's "
        "configuration_set"
    )
    assert found.returncode == 0, found.stdout + found.stderr
    rows = {c["check"]: c for c in checks_of(found)}
    assert rows["handler mail: SES configuration set"]["status"] == "ok"


def test_a_legacy_function_of_an_account_of_the_accounts_table_is_looked_up_there(
    setup: Setup,
) -> None:
    # given: legacy_function names, by ARN, a function of account 111122223333 (in the
    # accounts table: a replay invokes it with that account's role), in the settings' region
    other = "111122223333"
    role = f"arn:aws:iam::{other}:role/lambda-destinations-invoke"
    lam = _client_as(setup, role, "lambda")
    name = f"{setup.prefix}-legacy"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=_role_in(setup, role),
        Handler="app.handler",
        Code={"ZipFile": _code()},
    )
    setup.later.append(lambda: lam.delete_function(FunctionName=name))
    legacy = f"arn:aws:lambda:{REGION}:{other}:function:{name}"
    handlers = {"again": {"type": "replay", "legacy_function": legacy}}
    accounts = {"LAMBDA_DESTINATIONS_ACCOUNTS": json.dumps({other: {"role_arn": role}})}

    result = doctor(setup, handlers, accounts)

    # then: found in its account (it was looked up among the credentials' own account's
    # functions, and said missing: "no function matches ...")
    assert result.returncode == 0, result.stdout + result.stderr
    row = {c["check"]: c for c in checks_of(result)}["handler again"]
    assert row["status"] == "ok", row


def _client_as(setup: Setup, role: str, service: str) -> Any:
    """A client of ``service`` in the account of ``role``, with the role's credentials."""
    sts = boto3.client("sts", region_name=REGION, endpoint_url=setup.endpoint.url)
    got = sts.assume_role(RoleArn=role, RoleSessionName="doctor-test")["Credentials"]
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=setup.endpoint.url,
        aws_access_key_id=got["AccessKeyId"],
        aws_secret_access_key=got["SecretAccessKey"],
        aws_session_token=got["SessionToken"],
    )


def _role_in(setup: Setup, role: str) -> str:
    """An execution role of the account of ``role`` for a function there: its ARN."""
    iam = _client_as(setup, role, "iam")
    made = iam.create_role(RoleName=f"{setup.prefix}-run", AssumeRolePolicyDocument="{}")
    setup.later.append(lambda: iam.delete_role(RoleName=f"{setup.prefix}-run"))
    return str(made["Role"]["Arn"])


def _code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def test_an_smtp_server_not_reached_is_said_to_be_retried_not_quarantined(
    setup: Setup, smtp_port
) -> None:
    port, _ = smtp_port
    handlers = good_handlers(setup, port)
    _smtp_port_1(handlers, setup)

    detail = errors_of(doctor(setup, handlers))["handler smtp-mail"]["detail"]

    assert detail.startswith("SMTP server 127.0.0.1:1: not reached (SMTPConnectError: ")
    assert "the worker retries this" in detail
    assert "quarantined" not in detail


def test_an_smtp_login_refused_is_said_to_be_quarantined(setup: Setup, smtp_port) -> None:
    port, _ = smtp_port
    handlers = good_handlers(setup, port)
    _smtp_wrong_login(handlers, setup)

    detail = errors_of(doctor(setup, handlers))["handler smtp-mail"]["detail"]

    assert detail.startswith(f"SMTP server 127.0.0.1:{port}: connected · EHLO, then ")
    assert "is quarantined" in detail
    # the server's refusal quoted the login back: the password is masked
    assert "bad credentials alerts:***" in detail
    assert "wrong-password" not in detail


def test_a_handler_table_no_route_uses_is_checked_too(setup: Setup) -> None:
    unused = {"hook": {"type": "webhook"}, "x": {"type": "nosuch"}}
    env = {**setup.env(), "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(unused)}

    result = setup.doctor(env, "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    errors = errors_of(result)
    assert "give url" in errors["handler hook"]["detail"]
    assert "'nosuch' is unknown" in errors["handler x"]["detail"]


def test_an_sms_spend_limit_of_zero_is_found(setup: Setup, smtp_port) -> None:
    port, _ = smtp_port
    sns = setup.endpoint.sns
    sns.set_sms_attributes(attributes={"MonthlySpendLimit": "0"})
    try:
        result = doctor(setup, good_handlers(setup, port))
    finally:
        sns.set_sms_attributes(attributes={"MonthlySpendLimit": "100"})

    errors = errors_of(result)
    assert set(errors) == {"handler text"}, errors
    assert "MonthlySpendLimit" in errors["handler text"]["detail"]


def test_a_handler_timeout_longer_than_handler_timeout_is_a_warning(setup: Setup) -> None:
    hooks = {
        "slow-hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook", "timeout": "60s"},
        "quick-hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook", "timeout": "5s"},
    }
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(hooks),
        "LAMBDA_DESTINATIONS_HANDLER_TIMEOUT": "30",
    }

    result = setup.doctor(env, "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    warned = {c["check"]: c for c in checks_of(result) if c["status"] == "warn"}
    assert warned["handler slow-hook: timeout"]["detail"].startswith(
        "handlers.slow-hook.timeout (60s) is longer than handler_timeout (30s)"
    )
    assert not any(check.startswith("handler quick-hook") for check in warned)


def test_handler_settings_are_checked_when_the_aws_endpoint_does_not_answer(
    setup: Setup, smtp_port
) -> None:
    # doctor checked handlers only once the credentials passed: a bad webhook header or SMTP
    # login went unsaid until AWS answered, though `run` refuses the first before asking AWS.
    port, sink = smtp_port
    handlers = good_handlers(setup, port)
    _webhook_header_line_break(handlers, setup)
    _smtp_wrong_login(handlers, setup)
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:1",
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(
            [{"condition": "failure", "handlers": ["persist", *handlers]}]
        ),
    }

    result = setup.doctor(env, "--json")

    assert result.returncode == 4, result.stdout + result.stderr
    names = [c["check"] for c in checks_of(result)]  # the JSON is whole
    errors = errors_of(result)
    assert set(errors) == {"aws endpoint", "handler hook", "handler smtp-mail"}, errors
    assert "handlers.hook.headers" in errors["handler hook"]["detail"]
    assert "bad credentials alerts:***" in errors["handler smtp-mail"]["detail"]
    # in the order of a run with credentials: AWS, then the handlers, then the store
    assert names.index("aws endpoint") < names.index("handler hook") < names.index("store")
    # what asks AWS (SES, SNS, Lambda) is not said: the endpoint row says why
    assert not {"handler mail", "handler text", "handler again"} & set(names)
    assert sink.messages == []


# -- one read of what many handlers ask -----------------------------------------------------------
# Handlers are often configured alike: two email handlers with one sender, two SMS handlers
# texting one on-call number, replay handlers that each need the functions doctor has already
# listed. A run reads each once; every handler still gets its own row.

LIST_FUNCTIONS = b"GET /2015-03-31/functions "
GET_SENDER = f"GET /v2/email/identities/{GOOD_SENDER.replace('@', '%40')} ".encode()
GET_SES_ACCOUNT = b"GET /v2/email/account "
GET_SMS_ATTRIBUTES = b"Action=GetSMSAttributes"
OPTED_OUT = b"Action=CheckIfPhoneNumberIsOptedOut"


def _alike_handlers(setup: Setup) -> dict[str, dict[str, Any]]:
    """Two of each handler that asks AWS, each pair asking the same things; the replay
    handlers' legacy function in eu-west-1, whose functions they list there."""
    west = f"arn:aws:lambda:eu-west-1:123456789012:function:{setup.function}"
    return {
        "mail": {"type": "email", "from": GOOD_SENDER, "to": ["oncall@example.com"]},
        "mail-too": {"type": "email", "from": GOOD_SENDER, "to": ["billing@example.com"]},
        "text": {"type": "sms", "phone_numbers": ["+14155552671"]},
        "text-too": {"type": "sms", "phone_numbers": ["+14155552671", "+14155552672"]},
        "again": {"type": "replay", "functions": [f"{setup.prefix}-*"], "legacy_function": west},
        "again-too": {"type": "replay", "functions": [setup.function], "legacy_function": west},
    }


def _calls(requests: list[bytes]) -> dict[str, int]:
    """How many of each read the handlers make reached the endpoint (ListFunctions by region)."""
    listings = [r for r in requests if r.startswith(LIST_FUNCTIONS)]
    return {
        "ListFunctions us-east-1": sum(b"/us-east-1/lambda/" in r for r in listings),
        "ListFunctions eu-west-1": sum(b"/eu-west-1/lambda/" in r for r in listings),
        "GetEmailIdentity": sum(r.startswith(GET_SENDER) for r in requests),
        "GetAccount": sum(r.startswith(GET_SES_ACCOUNT) for r in requests),
        "GetSMSAttributes": sum(GET_SMS_ATTRIBUTES in r for r in requests),
        "CheckIfPhoneNumberIsOptedOut": sum(OPTED_OUT in r for r in requests),
    }


ONCE = {
    "ListFunctions us-east-1": 1,  # doctor's own listing, the replay handlers' too
    "ListFunctions eu-west-1": 1,
    "GetEmailIdentity": 1,
    "GetAccount": 1,
    "GetSMSAttributes": 1,
    "CheckIfPhoneNumberIsOptedOut": 2,  # two numbers
}
REFUSALS = {
    "ListFunctions": (
        LIST_FUNCTIONS,
        aws_error(403, "AccessDeniedException", "not authorized", "rest-json"),
        ["again", "again-too"],
        "functions cannot be listed (AccessDeniedException: not authorized)",
        {"ListFunctions eu-west-1": 0},  # the handlers stop at the first refusal
    ),
    "GetSMSAttributes": (
        GET_SMS_ATTRIBUTES,
        aws_error(403, "AuthorizationError", "not authorized", "query"),
        ["text", "text-too"],
        "SNS SMS attributes cannot be read (AuthorizationError: not authorized)",
        {"CheckIfPhoneNumberIsOptedOut": 0},
    ),
    # before: the refusal stopped the whole run (exit 3, and --json printed nothing)
    "CheckIfPhoneNumberIsOptedOut": (
        OPTED_OUT,
        aws_error(403, "AuthorizationError", "not authorized", "query"),
        ["text", "text-too"],
        "whether its numbers opted out of SMS cannot be checked (AuthorizationError: not "
        "authorized)",
        {"CheckIfPhoneNumberIsOptedOut": 1},  # both handlers' first number: one refusal
    ),
}


@pytest.mark.parametrize("refused", [None, *REFUSALS])
async def test_what_many_handlers_ask_is_read_once_a_run(setup: Setup, refused: str | None) -> None:
    # given: two email handlers with one sender, two SMS handlers sharing a number, two replay
    # handlers; with ``refused``, that read refused (moto enforces no IAM: the proxy answers
    # it, and every later one, as AWS would)
    setup.endpoint.create_function(setup.function, "eu-west-1")
    handlers = _alike_handlers(setup)
    routes = [{"condition": "failure", "handlers": ["persist", *handlers]}]
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(routes),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers),
    }
    needle, refusal, refused_rows, refused_detail, fewer = (
        REFUSALS[refused] if refused else (b"\0none", b"", [], "", {})
    )
    cutter = AnswerCutter(setup.endpoint.url, needle, http=True)
    cutter.refusals, cutter.refusal = (10, refusal) if refused else (0, b"")

    # when: the requests that reached the proxy are counted
    code, out, err, _ = await cli_through(
        cutter, env, "doctor", "--function", f"{setup.prefix}-*", "--json"
    )

    # then: one read of each for the run, and each handler its own row as before
    assert b"Traceback" not in err, err.decode()
    assert _calls(cutter.requests) == {**ONCE, **fewer}
    assert cutter.refused == (1 if refused else 0)
    assert code == 0, out.decode()  # a refused read is a warning
    rows = {c["check"]: c for c in json.loads(out)["checks"] if c["check"].startswith("handler ")}
    warned = {f"handler {name}" for name in refused_rows}
    assert {name for name, row in rows.items() if row["status"] != "ok"} == warned
    assert {rows[name]["detail"] for name in warned} == ({refused_detail} if refused else set())
    said = {name: rows[f"handler {name}"]["detail"] for name in handlers}
    assert said["mail"] == said["mail-too"] == f"SES sender {GOOD_SENDER} is verified"
    assert {name for name in rows if name.endswith(": SES sandbox")} == {
        "handler mail: SES sandbox",
        "handler mail-too: SES sandbox",
    }
    if not refused:
        assert said["text-too"] == "2 number(s), none opted out; SMS type account default"
        for name in ("again", "again-too"):
            assert re.fullmatch(r"its target functions exist \(\d+ in the account\)", said[name])


def _json_answer(body: dict[str, Any]) -> bytes:
    """A 200 answer with a JSON body, whole, as a proxy gives it in AWS's place."""
    data = json.dumps(body).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _mail_to(setup: Setup, *recipients: str) -> dict[str, str]:
    """The environment of a worker whose failures go to one email handler, ``mail``."""
    handlers = {"mail": {"type": "email", "from": GOOD_SENDER, "to": list(recipients)}}
    routes = [{"condition": "failure", "handlers": ["persist", "mail"]}]
    return {
        **setup.env(),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(routes),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers),
    }


def _in_the_sandbox(endpoint: str) -> AnswerCutter:
    """A proxy to ``endpoint`` answering SES's GetAccount as an account in the sandbox does
    (moto's SES has no GetAccount)."""
    sandbox = AnswerCutter(endpoint, GET_SES_ACCOUNT, http=True)
    sandbox.refusals = 10
    sandbox.refusal = _json_answer({"ProductionAccessEnabled": False, "SendingEnabled": True})
    return sandbox


async def test_the_sandbox_row_names_unverified_recipients_masked(setup: Setup) -> None:
    # given: an account in SES's sandbox (a proxy answers GetAccount) and a recipient moto has
    # no identity of
    recipient = "oncall@example.com"
    env = _mail_to(setup, recipient)
    sandbox = _in_the_sandbox(setup.endpoint.url)

    # when
    code, out, err, _ = await cli_through(
        sandbox, env, "doctor", "--function", f"{setup.prefix}-*", "--json"
    )

    # then: an error row naming the recipient masked, as logs and errors name one (before:
    # the address whole)
    assert code == 1, err.decode()
    row = {c["check"]: c for c in json.loads(out)["checks"]}["handler mail: SES sandbox"]
    assert row["status"] == "error"
    assert "not verified: o***@example.com" in row["detail"]
    assert recipient not in out.decode()


async def test_the_sandbox_takes_a_named_recipient_and_one_whose_domain_is_verified(
    setup: Setup,
) -> None:
    # given: an account in SES's sandbox, which sends to a verified address or to any address
    # of a verified domain; one recipient with a name, one of a verified domain
    ses = boto3.client("ses", region_name=REGION, endpoint_url=setup.endpoint.url)
    ses.verify_email_identity(EmailAddress="oncall@example.com")
    ses.verify_domain_identity(Domain="doctor-team.example.com")
    env = _mail_to(setup, "On Call <oncall@example.com>", "anyone@doctor-team.example.com")

    # when
    code, out, err, _ = await cli_through(
        _in_the_sandbox(setup.endpoint.url), env, "doctor", "--function", f"{setup.prefix}-*"
    )

    # then: both verified (before: each unverified, the first named "O***@example.com>")
    assert code == 0, out.decode() + err.decode()
    assert "in the sandbox; every recipient is verified" in out.decode()


async def test_a_recipient_whose_identity_cannot_be_read_is_a_warning_in_the_sandbox_row(
    setup: Setup,
) -> None:
    # given: an account in SES's sandbox (moto's SES has no GetAccount: a proxy answers it),
    # and credentials that may read the sender's identity but not the recipient's (a policy
    # scoped to the sender's identity ARN: a second proxy refuses that one read)
    recipient = "oncall@example.com"
    env = _mail_to(setup, recipient)
    get_recipient = f"GET /v2/email/identities/{recipient.replace('@', '%40')} ".encode()
    identity = AnswerCutter(setup.endpoint.url, get_recipient, http=True)
    identity.refusals = 10
    identity.refusal = aws_error(403, "AccessDeniedException", "not authorized", "rest-json")

    # when
    async with identity.running() as behind:
        sandbox = _in_the_sandbox(behind)
        code, out, err, _ = await cli_through(
            sandbox, env, "doctor", "--function", f"{setup.prefix}-*", "--json"
        )

    # then: a warning in the sandbox row, and the other checks said (before: the refusal
    # stopped the run, exit 3, and --json printed nothing)
    assert b"Traceback" not in err, err.decode()
    assert (sandbox.refused, identity.refused) == (1, 1)
    assert code == 0, err.decode()
    rows = {c["check"]: c for c in json.loads(out)["checks"]}
    assert rows["handler mail"]["detail"] == f"SES sender {GOOD_SENDER} is verified"
    row = rows["handler mail: SES sandbox"]
    assert row["status"] == "warn"
    assert row["detail"] == (
        "in the sandbox, and whether its recipients are verified cannot be checked "
        "(AccessDeniedException: not authorized)"
    )
    assert "ses:GetEmailIdentity" in row["fix"]


# -- the endpoint, not the handler ----------------------------------------------------------------
# A handler's check can meet an endpoint that does not answer (a VPC with endpoints for SQS and
# STS, none for SES), or answers what no AWS service gives (a web server behind one path). Either
# is said as doctor's other checks say it, with the endpoint's fix; the other checks still print.

OTHER_ACCOUNT = "210987654321"
ASSUME_ROLE = b"Action=AssumeRole"


def _asking_handlers(setup: Setup, *, role: bool = False) -> dict[str, dict[str, Any]]:
    """An email, an SMS and a replay handler; with ``role``, the replay handler's legacy
    function is another account's, in another region: its functions are listed there with the
    account's role (STS AssumeRole)."""
    handlers: dict[str, dict[str, Any]] = {
        "mail": {"type": "email", "from": GOOD_SENDER, "to": ["oncall@example.com"]},
        "text": {"type": "sms", "phone_numbers": ["+14155552671"]},
        "again": {"type": "replay", "functions": [f"{setup.prefix}-*"]},
    }
    if role:
        west = f"arn:aws:lambda:eu-west-1:{OTHER_ACCOUNT}:function:{setup.function}"
        handlers["again"]["legacy_function"] = west
    return handlers


def _asking_env(setup: Setup, *, role: bool = False) -> dict[str, str]:
    handlers = _asking_handlers(setup, role=role)
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(
            [{"condition": "failure", "handlers": ["persist", *handlers]}]
        ),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers),
    }
    if role:
        arn = f"arn:aws:iam::{OTHER_ACCOUNT}:role/lambda-destinations-invoke"
        env["LAMBDA_DESTINATIONS_ACCOUNTS"] = json.dumps({OTHER_ACCOUNT: {"role_arn": arn}})
    return env


@pytest.mark.parametrize(
    ("needle", "handler"),
    [(GET_SENDER, "mail"), (GET_SMS_ATTRIBUTES, "text"), (LIST_FUNCTIONS, "again")],
    ids=["SES", "SNS", "Lambda"],
)
async def test_a_handler_check_whose_endpoint_does_not_answer_exits_4(
    setup: Setup, needle: bytes, handler: str
) -> None:
    # given: the endpoint closes the connection of that read, whatever it asked, every time
    cutter = AnswerCutter(setup.endpoint.url, needle, http=True)
    cutter.cuts = 100

    # when
    code, out, err, proxied = await cli_through(
        cutter, _asking_env(setup), "doctor", "--function", f"{setup.prefix}-*", "--json"
    )

    # then: before, a warning (exit 0) that it "cannot be read", or "the endpoint did not
    # answer" with no fix (exit 1); now the endpoint's row, as the queues' (exit 4)
    assert b"Traceback" not in err, err.decode()
    assert code == 4, out.decode() + err.decode()
    rows = {c["check"]: c for c in json.loads(out)["checks"]}
    row = rows[f"handler {handler}"]
    assert (row["status"], row["unreachable"]) == ("error", True), row
    assert row["detail"].startswith(f"{proxied} does not answer (Connection was closed "), row
    assert row["fix"].startswith("check LAMBDA_DESTINATIONS_ENDPOINT_URL, "), row
    assert row["fix"].endswith(" and the network"), row
    # the other handlers' checks still made and said, and passed
    assert {f"handler {name}" for name in _asking_handlers(setup)} <= set(rows)
    assert {name for name, row in rows.items() if row["status"] == "error"} == {
        f"handler {handler}"
    }


class _WebServer(http.server.SimpleHTTPRequestHandler):
    """`python3 -m http.server`: 404 HTML pages to GETs of what it lacks, 501 ones to POSTs."""

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _web_server() -> Iterator[Callable[[bytes], bytes]]:
    """A real HTTP server that is not AWS, and what answers a request with its answer."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def answer(request: bytes) -> bytes:
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sock.sendall(request)
            return b"".join(iter(lambda: sock.recv(65536), b""))  # it closes when done

    try:
        yield answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("needle", "handler", "answered"),
    [
        (GET_SENDER, "mail", "404 with an HTML page titled 'Error response'"),
        (GET_SMS_ATTRIBUTES, "text", "an HTML page titled 'Error response'"),
        (ASSUME_ROLE, "again", "an HTML page titled 'Error response'"),
    ],
    ids=["SES", "SNS", "STS for Lambda"],
)
async def test_a_handler_check_whose_endpoint_answers_what_is_not_aws_fails_that_check(
    setup: Setup, needle: bytes, handler: str, answered: str
) -> None:
    # given: that read (the account role's AssumeRole for the replay handler's listing in the
    # other account) answered by a web server that is not AWS
    role = needle == ASSUME_ROLE
    with _web_server() as web:
        cutter = AnswerCutter(setup.endpoint.url, needle, http=True)
        cutter.answer = web

        # when
        code, out, err, proxied = await cli_through(
            cutter,
            _asking_env(setup, role=role),
            "doctor",
            "--function",
            f"{setup.prefix}-*",
            "--json",
        )

    # then: before, a warning with no fix (exit 0), or for the replay handler botocore's
    # ResponseParserError as the CLI's one line (exit 1) and no check printed; now that check
    # fails with the endpoint's fix, as the `aws endpoint` row would, and the others print
    assert b"Traceback" not in err, err.decode()
    assert cutter.refused >= 1
    assert code == 1, out.decode() + err.decode()
    rows = {c["check"]: c for c in json.loads(out)["checks"]}
    assert rows[f"handler {handler}"] == {
        "check": f"handler {handler}",
        "status": "error",
        "detail": f"{proxied} answered {answered}, not an AWS answer",
        "fix": "check that LAMBDA_DESTINATIONS_ENDPOINT_URL is the URL of an AWS endpoint",
        "unreachable": False,
    }
    assert {f"handler {name}" for name in _asking_handlers(setup)} <= set(rows)
    assert rows["store"]["status"] == "ok"
    # what made the exit status 1 is that check (and, for the role, the account's own row)
    failed = {name for name, row in rows.items() if row["status"] == "error"}
    assert failed == {f"handler {handler}"} | ({f"account {OTHER_ACCOUNT}"} if role else set())
