"""Settings: environment variables (prefix ``LAMBDA_DESTINATIONS_``) over an optional TOML file.

Precedence, highest first: command-line options, environment variables, the TOML file named by
``LAMBDA_DESTINATIONS_CONFIG`` (or ``--config``), defaults. Every default works in ``dev``.
Built once in the entry point and passed down; nothing reads the environment later.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime as dt
import difflib
import importlib.util
import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from lambda_destinations._ranges import number_range
from lambda_destinations._urls import (
    BRACKET_UNCLOSED,
    IPV6_BRACKETS,
    check_port,
    endpoint_host_problem,
    is_host,
    unbracketed_ipv6,
)
from lambda_destinations.environment import SECRETS_VARIABLE
from lambda_destinations.errors import ConfigError
from lambda_destinations.redact import echoed, mask_url

ENV_PREFIX = "LAMBDA_DESTINATIONS_"
# Written by `dev` in the folder it runs in; read by every command there when no other config
# file is named, so the commands after `dev` find its endpoint, queues and store.
DEV_CONFIG = Path(".lambda-destinations") / "dev.toml"
# dev's own store, where no other was given to it.
DEV_STORE = DEV_CONFIG.parent / "dev.db"
# The fix when nothing set the settings (Settings.outside_dev): dev's file is in another folder.
OUTSIDE_DEV = f"this folder has no {DEV_CONFIG}: run commands in the folder `dev` runs in"
ROUTE_OUTCOMES = ("success", "failure", "any")
# A hundred years: more is "forever", which 0 says; a cutoff that far back is before year 1
# and cannot be computed (OverflowError), so a larger value is refused here, not at pruning.
KEEP_DAYS_MAX = 36500
# The shortest and the longest time between two rounds of queue depth samples
# (Settings.queue_metrics_interval).
QUEUE_METRICS_MIN = 1.0
QUEUE_METRICS_MAX = 3600.0
# The settings kept for KEEP_DAYS_MAX days at most.
KEEP_DAYS_SETTINGS = (
    "keep_successes_days",
    "keep_failures_days",
    "keep_open_failures_days",
    "keep_quarantine_days",
    "keep_replays_days",
)
# Upper bounds a validator checks, for a line of its own, rather than its Field (whose line
# would be pydantic's): the range of a setting given no number names them too.
_CHECKED_MAX = {"queue_metrics_interval": QUEUE_METRICS_MAX} | dict.fromkeys(
    KEEP_DAYS_SETTINGS, float(KEEP_DAYS_MAX)
)


@dataclasses.dataclass(frozen=True)
class SettingSource:
    """Where a setting's value came from: ``kind`` is ``flag``, ``env``, ``file``, ``profile``
    (the region of the AWS profile) or ``default``; ``name`` is the option (``--store``), the
    variable (``LAMBDA_DESTINATIONS_STORE``), the TOML file's path, the AWS profile's name, or
    for a default, None."""

    kind: Literal["flag", "env", "file", "profile", "default"]
    name: str | None = None

    def __str__(self) -> str:
        """As an error line names it: ``--store``, the variable, ``the TOML file x.toml``."""
        if self.kind == "file":
            return f"the TOML file {self.name}"
        if self.kind == "profile":
            return f"the AWS profile {self.name}"
        return self.name or self.kind


DEFAULT_SOURCE = SettingSource("default")


# A route's function glob: a function name's characters (letters, digits, - and _) and the
# glob's own. Anything else (an ARN's or a qualifier's ":", a space) matches no function name.
_FUNCTION_GLOB = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")
# An SQS queue's ARN (arn:aws:sqs:us-east-1:123456789012:orders), which a route's queue glob,
# matched against the queue's name and URL, never matches.
_QUEUE_ARN = re.compile(r"arn:[^:]*:sqs:")


class RouteConfig(BaseModel):
    """One routing rule: every given field must match; the first matching rule wins.

    ``condition`` is ``success``, ``failure``, ``any`` or an exact condition such as
    ``RetriesExhausted``; ``function``, ``error_type`` and ``queue`` are shell globs (``queue``
    matches the queue's name or URL).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    handlers: tuple[str, ...] = Field(min_length=1)
    condition: str = "any"
    function: str | None = None
    error_type: str | None = None
    queue: str | None = None

    def described(self) -> str:
        """``condition=failure function=orders-* -> persist, sms``: what it takes, its chain."""
        parts = [f"condition={self.condition}"]
        parts += [
            f"{field}={value}"
            for field in ("function", "error_type", "queue")
            if (value := getattr(self, field)) is not None
        ]
        return " ".join(parts) + " -> " + ", ".join(self.handlers)

    def takes_all_of(self, later: RouteConfig) -> bool:
        """Whether this route matches every record ``later`` matches, so that ``later``, after
        it, never runs. Judged on what is certain: the condition, and each glob left out,
        the same as ``later``'s, or ``*`` (which needs the field, as ``later``'s glob does)."""
        globs = ("function", "error_type", "queue")
        return _condition_takes(self.condition, later.condition) and all(
            mine is None or mine == theirs or (mine == "*" and theirs is not None)
            for mine, theirs in ((getattr(self, f), getattr(later, f)) for f in globs)
        )

    @field_validator("handlers")
    @classmethod
    def _each_handler_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A chain runs each handler once for a record: the second entry would find the first
        # one's completion and count every record as a duplicate.
        for name in value:
            if value.count(name) > 1:
                raise ValueError(
                    f"handler {name!r} is listed twice: a route runs a handler once; list it once"
                )
        return value

    @field_validator("function")
    @classmethod
    def _a_name_glob(cls, value: str | None) -> str | None:
        # Matched against the record's function name alone: a glob no name can match (an
        # ARN, name:alias) let every record pass the route by, to a later one, unsaid.
        if value is not None and (
            problem := function_glob_problem(value, "a route's function is a glob")
        ):
            raise ValueError(problem)
        return value

    @field_validator("error_type", "queue")
    @classmethod
    def _a_glob(cls, value: str | None, info: ValidationInfo) -> str | None:
        # An empty glob, one with spaces around it or a queue's ARN matches no error type or
        # queue: the route never ran, its records passing by to a later route, unsaid.
        if value is None:
            return value
        what = "error type" if info.field_name == "error_type" else "queue"
        if problem := glob_problem(value, what, str(info.field_name)):
            raise ValueError(problem)
        if _QUEUE_ARN.match(value):
            raise ValueError(
                f"{echoed(value)!r} is a queue's ARN, which matches no queue: a route's queue is "
                f"a glob on the queue's name or URL: write {echoed(value.rpartition(':')[2])!r}"
            )
        return value

    @field_validator("condition")
    @classmethod
    def _known_condition(cls, value: str) -> str:
        if value in ROUTE_OUTCOMES or not (problem := condition_problem(value)):
            return value
        raise ValueError(problem)


def function_glob_problem(value: str, subject: str) -> str | None:
    """Why ``value``, a glob matched against a record's function name alone (what
    ``subject`` says: ``a route's function is a glob``), can match no name (an ARN,
    name:alias); None when it can."""
    if _FUNCTION_GLOB.fullmatch(value):
        return None
    # The name after an ARN's or partial ARN's "function:" (function:orders too), before a
    # qualifier: my-function:live names my-function.
    name = re.sub(r"^(?:.*:)?function:", "", value).partition(":")[0]
    fix = (
        f": write {name!r}"
        if ":" in value and _FUNCTION_GLOB.fullmatch(name)
        else " (a name holds letters, digits, - and _)"
    )
    return (
        f"{echoed(value)!r} matches no function: {subject} on the function's name, without "
        f"its ARN, version or alias{fix}"
    )


def glob_problem(value: str, what: str, setting: str) -> str | None:
    """Why ``value``, a glob on ``what`` (``error type``, ``queue``), matches none: empty, or
    spaces around it; None when it may match."""
    if not value.strip():
        return (
            f"{value!r} matches no {what}: leave {setting} out to match every one, "
            f"or write a glob ({'*Timeout*' if what == 'error type' else 'orders-*'})"
        )
    if value != value.strip():
        return (
            f"{echoed(value)!r} has spaces around it, so matches no {what}: "
            f"write {echoed(value.strip())!r}"
        )
    return None


def condition_problem(value: str, *, outcomes: bool = True) -> str | None:
    """Why ``value`` is no condition as Lambda spells one (nor, with ``outcomes``, a route's
    success, failure or any); None when it may be one."""
    # Lambda's conditions are an open set, but they are spelt in CamelCase
    # (RetriesExhausted, EventAgeExceeded): a lower-case word other than these is a typo.
    if re.fullmatch(r"[A-Z][A-Za-z0-9]*", value):
        return None
    close = difflib.get_close_matches(value.lower(), ROUTE_OUTCOMES, n=1) if outcomes else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    use = "success, failure, any, or a condition" if outcomes else "a condition"
    return (
        f"{value!r} is no condition{hint}: use {use} as Lambda spells it (RetriesExhausted, "
        "EventAgeExceeded)"
    )


def _condition_takes(earlier: str, later: str) -> bool:
    """Whether a route's condition ``earlier`` matches every record ``later`` matches:
    ``any`` all; ``success`` and ``failure`` their own outcome, ``Success`` the one and every
    other exact condition the other; an exact condition itself alone."""
    first, then = earlier.lower(), later.lower()
    if first == "any" or first == then:
        return first in ROUTE_OUTCOMES or earlier == later
    if first in ROUTE_OUTCOMES and then not in ROUTE_OUTCOMES:
        return first == "failure"  # an exact condition other than Success is a failure's
    return False


# An IAM role's ARN: arn:<partition>:iam::<account>:role/<path/>name.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):role/[\w+=,.@/-]{1,512}")


class AccountRole(BaseModel):
    """The role to assume for Lambda calls to functions of one account (``[accounts.ID]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role_arn: str
    external_id: str | None = Field(default=None, min_length=2, max_length=1224)

    @field_validator("role_arn")
    @classmethod
    def _a_role(cls, value: str) -> str:
        if not _ROLE_ARN.fullmatch(value.strip()):
            raise ValueError(
                f"{echoed(value)!r} is not an IAM role ARN: write the role's ARN, such as "
                "arn:aws:iam::111122223333:role/lambda-destinations-invoke"
            )
        return value.strip()


class Settings(BaseSettings):
    """Everything the worker and the commands can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        # load_settings validates through a subclass and hands this class out through
        # model_construct, so its own validator is never needed there: building it on first
        # use, not at import, saves a schema build on every start-up.
        defer_build=True,
    )

    # The empty defaults are values, not `default_factory=list` or `dict`: pydantic reads a
    # factory's signature, and for a builtin that means tokenizing its text signature, a few
    # milliseconds of every start-up. A mutable default is copied for each instance all the same.
    queues: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Queue URLs or names to poll; comma-separated in the environment.",
    )
    config: Path | None = Field(default=None, description="The TOML file read for settings.")
    endpoint_url: str | None = Field(
        default=None, description="One endpoint URL for every AWS service (local emulators)."
    )
    region: str | None = Field(
        default=None,
        description="AWS region; else AWS_REGION, AWS_DEFAULT_REGION, the AWS profile's.",
    )
    store: str = Field(
        default="sqlite:///lambda-destinations.db",
        description="Result store URL: sqlite:///path/to/file.db or postgresql://user@host/db.",
    )
    concurrency: int = Field(default=32, ge=1, le=1000, description="Messages handled at once.")
    bytes_in_flight: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Message body bytes handled at once (at least one message is).",
    )
    pollers_per_queue: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Concurrent receives per queue; default: enough to fill `concurrency`.",
    )
    wait_time: int = Field(default=20, ge=0, le=20, description="Receive long-poll seconds.")
    visibility_timeout: int | None = Field(
        default=None,
        ge=1,
        le=43200,
        description="Seconds a received message stays hidden; default: the queue's own.",
    )
    heartbeat_fraction: float = Field(
        default=0.5,
        gt=0.05,
        lt=1.0,
        description="Extend a message's visibility once this fraction of it has elapsed.",
    )
    shutdown_grace: float = Field(
        default=25.0, ge=0, le=3600, description="Seconds in-flight handlers get on SIGTERM."
    )
    retry_base: float = Field(
        default=5.0, ge=0, le=43200, description="First message-level retry delay (seconds)."
    )
    retry_max: float = Field(
        default=900.0, ge=0, le=43200, description="Largest message-level retry delay (seconds)."
    )
    handler_attempts: int = Field(
        default=3, ge=1, le=20, description="In-process tries of a transient handler error."
    )
    handler_retry_max_delay: float = Field(
        default=10.0, ge=0, description="Seconds in-process retries may take in all."
    )
    handler_timeout: float = Field(
        default=300.0,
        gt=0,
        # SQS hides a message 12 hours from its receipt at most: a handler running longer has
        # it delivered again. Unbounded, a scheduled job's lease (this plus a minute) could
        # pass year 9999 and fail every turn of the scheduler.
        le=43200,
        description="Seconds one handler may run before it counts as failed.",
    )
    claim_lease: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a running handler's claim lasts unless its worker renews it: a "
        "crashed worker's claims free within this.",
    )
    claim_renew_interval: float = Field(
        default=10.0,
        # Each renewal is a write: a nanosecond's interval renewed without pause, a write loop.
        ge=0.1,
        description="Seconds between renewals of a running handler's claim.",
    )
    ecs_agent_uri: str | None = Field(
        default=None,
        # Set by ECS itself in every task's containers, hence no prefix.
        validation_alias=AliasChoices("ecs_agent_uri", "ECS_AGENT_URI"),
        description="The ECS agent's endpoint; when set, busy tasks are protected from scale-in.",
    )
    task_protection: bool = Field(
        default=True, description="Protect the ECS task from scale-in while messages are in flight."
    )
    task_protection_minutes: int = Field(
        default=10, ge=1, le=2880, description="Expiry of each protection; renewed while busy."
    )
    keep_successes_days: float = Field(
        default=7,
        ge=0,
        description="Days successes, and the handler runs of records not stored, are kept"
        " (0: forever).",
    )
    keep_failures_days: float = Field(
        default=90,
        ge=0,
        description=(
            "Days resolved failures (recovered, ignored) and replays' own failure records "
            "are kept (0: forever)."
        ),
    )
    keep_open_failures_days: float = Field(
        default=0,
        ge=0,
        description="Days open failures (and replayed ones) are kept (0: until resolved).",
    )
    keep_quarantine_days: float = Field(
        default=90, ge=0, description="Days quarantined messages are kept (0: forever)."
    )
    keep_replays_days: float = Field(
        default=90, ge=0, description="Days replay attempts are kept (0: forever)."
    )
    prune_interval: float = Field(
        default=600,
        gt=0,
        le=86400,  # retention counts days: a day between runs at most
        description="Seconds between two runs of the pruning job (one replica runs each).",
    )
    prune_batch: int = Field(
        default=500, ge=1, le=10000, description="Rows pruning deletes per transaction."
    )
    ops_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics; 0: off."
    )
    ops_host: str | None = Field(
        default=None, description="Address the ops server listens on; run: 0.0.0.0, dev: 127.0.0.1."
    )
    queue_metrics_interval: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between queue depth samples for /metrics (1 to 3600); 0: off.",
    )
    once_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds `run --once` waits for SQS or the store, then exits 4.",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="The worker's event loop (run, dev): uvloop when installed (auto), or "
        "asyncio's own.",
    )
    handler_modules: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Modules imported for @handler-decorated functions; comma-separated in the "
        "environment.",
    )
    routes: list[RouteConfig] = Field(
        default_factory=lambda: [RouteConfig(handlers=("persist",))],
        description="Routing rules; the default persists every record.",
    )
    handlers: dict[str, dict[str, Any]] = Field(
        default={}, description="Named handler instances and their settings."
    )
    accounts: dict[str, AccountRole] = Field(
        default={},
        description="By account id, the role to assume for Lambda calls to functions of that "
        "account (replays of records other accounts' functions sent).",
    )

    @field_validator("log_level", "log_format", "event_loop", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        """DEBUG as debug: operators write levels in capitals as often as not."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("event_loop")
    @classmethod
    def _uvloop_installed(cls, value: str) -> str:
        """uvloop asked for by name must be there: auto takes asyncio's loop without it."""
        if value == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError(
                "uvloop is not installed: pip install 'lambda-destinations[uvloop]', or set "
                "auto (uvloop when installed, asyncio's own loop otherwise)"
            )
        return value

    @field_validator("queues", "handler_modules", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        """A JSON list, or names separated by commas."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                try:
                    return json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"not a JSON list ({exc.msg}); or separate names by commas"
                    ) from None
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("accounts")
    @classmethod
    def _role_of_its_account(cls, value: dict[str, AccountRole]) -> dict[str, AccountRole]:
        for account, role in value.items():
            if not re.fullmatch(r"[0-9]{12}", account):
                raise ValueError(
                    f"{echoed(account)!r} is not an AWS account id: name each table by the 12 "
                    "digits of the account its functions are in ([accounts.111122223333])"
                )
            named = _ROLE_ARN.fullmatch(role.role_arn)
            if named is not None and named[1] != account:
                raise ValueError(
                    f"accounts.{account}.role_arn is a role of account {named[1]}: the role "
                    f"to assume for account {account}'s functions is one of account {account}"
                )
        return value

    @field_validator("routes")
    @classmethod
    def _each_route_can_run(cls, value: list[RouteConfig]) -> list[RouteConfig]:
        # The first matching route wins: one after a route that takes all its records never
        # ran (a catch-all first, and the oncall SMS of the failure route after it never sent).
        for index, route in enumerate(value):
            for before, earlier in enumerate(value[:index]):
                if earlier.takes_all_of(route):
                    raise ValueError(
                        f"routes.{index} ({route.described()}) never runs: routes.{before} "
                        f"({earlier.described()}) takes every record it would, as the first "
                        f"matching route wins: move it before routes.{before}, or remove it"
                    )
        return value

    @field_validator("queues")
    @classmethod
    def _each_queue_once(cls, value: list[str]) -> list[str]:
        # Each entry gets its own pollers by name: the same queue twice cannot start.
        for index, entry in enumerate(value):
            if entry in value[:index]:
                raise ValueError(f"{entry!r} is listed twice: list each queue once")
        return value

    @field_validator(*KEEP_DAYS_SETTINGS)
    @classmethod
    def _keep_at_most_a_century(cls, value: float) -> float:
        if value > KEEP_DAYS_MAX:
            raise ValueError(
                f"{value:g} days is more than {KEEP_DAYS_MAX} (100 years): use at most "
                f"{KEEP_DAYS_MAX}, or 0 to keep forever"
            )
        return value

    @field_validator("queue_metrics_interval")
    @classmethod
    def _sampled_between_a_second_and_an_hour(cls, value: float) -> float:
        # Each round is one GetQueueAttributes a queue and a DLQ, billed by SQS; Prometheus
        # scrapes seconds apart at the shortest, and SQS's counts are approximate: a sample
        # more often than once a second shows nothing more, and 0.001 calls without a pause.
        if 0 < value < QUEUE_METRICS_MIN:
            raise ValueError(
                f"{value:g} seconds is below {QUEUE_METRICS_MIN:g}: use {QUEUE_METRICS_MIN:g} "
                "or more (60 by default), or 0 to turn the samples off"
            )
        # The gauges keep the last sample and Prometheus scrapes it as current: sampled less
        # than hourly, the DLQ alert fires hours late, or for a DLQ emptied long ago (1e12
        # sampled once at start, then never; 60000, milliseconds meant, every 17 hours).
        if value > QUEUE_METRICS_MAX:
            raise ValueError(
                f"{value:g} seconds is above {QUEUE_METRICS_MAX:g} (an hour): use at most "
                f"{QUEUE_METRICS_MAX:g} (60 by default), or 0 to turn the samples off"
            )
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean(cls, value: Any, info: ValidationInfo) -> Any:
        """A number setting given true or false (a TOML or JSON boolean): pydantic takes them
        as 1 and 0, so ``concurrency = true`` ran one message at a time, and ``false`` was
        "out of range". Refused with the line of any value that is no number, as the
        variable's ``true`` is."""
        field = str(info.field_name)
        problem = boolean_problem(cls.model_fields[field], value, upper=_CHECKED_MAX.get(field))
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("*", mode="wrap")
    @classmethod
    def _finite(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """A number setting that is no finite number (``nan``, ``inf``): NaN compares false to
        every bound, so pydantic's line named a bound it does not break ("greater than or equal
        to 0"), and infinity passes a setting without an upper bound. Infinity refused by a
        bound keeps that bound's line: defined after the number settings' own checks, this
        one wraps them."""
        field = str(info.field_name)
        if cls.model_fields[field].annotation is float and _is_nan(value):
            raise ValueError(_not_finite(field, value))
        result = handler(value)
        if isinstance(result, float) and not math.isfinite(result):
            raise ValueError(_not_finite(field, value))
        return result

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urllib.parse.urlsplit(value.strip())
        except ValueError:  # urllib's "Invalid IPv6 URL"
            raise ValueError(BRACKET_UNCLOSED + ", such as http://[::1]:4566") from None
        if parts.scheme in ("http", "https") and unbracketed_ipv6(value.strip()):
            raise ValueError(IPV6_BRACKETS.format(example=f"{parts.scheme}://[::1]:4566"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "use an http:// or https:// URL with a host, such as http://127.0.0.1:4566"
            )
        if parts.username is not None or parts.password is not None:
            # Every request is signed with the AWS credentials: aiohttp refuses a URL's own as
            # well, and each call would fail as if the endpoint could not be reached.
            raise ValueError(
                "no user:password@ in an endpoint URL (requests are signed with the AWS "
                "credentials): remove it, such as http://127.0.0.1:4566"
            )
        check_port(value.strip())  # before the path's fix repeats the port
        if (problem := endpoint_host_problem(value.strip())) is not None:
            raise ValueError(problem)
        if parts.path not in ("", "/"):
            # AWS answers at the root of its endpoints (every SDK's form, LocalStack's and
            # moto's): a path reaches a web server's page, and every call would fail at run time.
            query = "/ and its query after it" if parts.query else ""
            raise ValueError(
                "no path in an endpoint URL (AWS services answer at its root): write "
                f"{parts.scheme}://{echoed(parts.netloc)}{query}"
            )
        return value.strip()

    @field_validator("ops_host")
    @classmethod
    def _listen_host(cls, value: str | None) -> str | None:
        # What a socket binds and a URL names (healthcheck asks it): a name or an IP address,
        # an IPv6 one with or without its brackets. A space or a slash reached the URL
        # healthcheck builds, and urllib's refusal of it was a traceback.
        if value is None or not (host := value.strip().removeprefix("[").removesuffix("]")):
            return None
        if not is_host(host):
            raise ValueError(
                f"{echoed(value.strip())!r} is not a host name or IP address: use an address of "
                "this machine, such as 0.0.0.0 (every IPv4 address), :: (every IPv6 address) or "
                "127.0.0.1"
            )
        return host

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
        if ":" not in value or scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("use sqlite:///path/to/file.db or postgresql://user@host/db")
        return value

    @model_validator(mode="after")
    def _region_name(self) -> Settings:
        # Not the profile's (botocore checks it): looking it up would load botocore here.
        region = standard_region(self.region)
        if region is not None and not _REGION.fullmatch(region):
            if self.region:
                where = f"{ENV_PREFIX}REGION or the TOML file's region"
            else:
                where = standard_region_variable()
            raise ValueError(
                f"region {echoed(region)!r} is not an AWS region name: set {where} to one "
                "such as us-east-1"
            )
        return self

    @model_validator(mode="after")
    def _retry_bounds(self) -> Settings:
        if self.retry_max < self.retry_base:
            raise ValueError(
                f"retry_max ({self.retry_max:g}) is below retry_base ({self.retry_base:g}): "
                f"raise retry_max or lower retry_base ({_both('retry_max', 'retry_base')})"
            )
        if self.claim_renew_interval >= self.claim_lease:
            raise ValueError(
                f"claim_renew_interval ({self.claim_renew_interval:g}) must be below "
                f"claim_lease ({self.claim_lease:g}), or claims expire while handlers run: "
                "lower claim_renew_interval or raise claim_lease "
                f"({_both('claim_renew_interval', 'claim_lease')})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    # Where each setting's value came from, as load_settings found it (see origin, source).
    _origins: dict[str, str] = PrivateAttr(default={})
    _sources: dict[str, SettingSource] = PrivateAttr(default={})
    # The sources of the [handlers.NAME] tables, the one that wins first (see handler_origin).
    _handler_sources: list[tuple[SettingSource, Mapping[str, Any]]] = PrivateAttr(default=[])
    # The AWS profile and its region (see aws_profile_region), once looked up.
    _profile: tuple[str, str | None, bool] | None = PrivateAttr(default=None)

    def origin(self, field: str) -> str | None:
        """Where ``field``'s value came from (``--store``, ``LAMBDA_DESTINATIONS_STORE``, the
        TOML file), for an error about it; None for settings load_settings did not build.
        Kept for ``store``, ``queues``, ``endpoint_url``, ``region``, ``routes``,
        ``handler_modules``, ``visibility_timeout`` and ``heartbeat_fraction``."""
        return self._origins.get(field)

    def source(self, field: str) -> SettingSource:
        """Where ``field``'s value came from: an option, a variable, the TOML file, or the
        default (also for settings load_settings did not build)."""
        return self._sources.get(field, DEFAULT_SOURCE)

    def handler_source(self, name: str, setting: str) -> SettingSource:
        """Where ``handlers.NAME.setting`` was set: the first of the variable and the TOML file
        that has it (the two are merged setting by setting); else where ``handlers`` came
        from."""
        for source, handlers in self._handler_sources:
            table = handlers.get(name)
            if isinstance(table, Mapping) and setting in table:
                return source
        return self.source("handlers")

    def handler_origin(self, name: str, setting: str | None = None) -> str | None:
        """Where ``handlers.NAME.setting`` was set, for an error about it: the variable holding
        ``LAMBDA_DESTINATIONS_HANDLERS``' JSON or the TOML file, the first that has it (the
        two are merged table by table, setting by setting). For a setting neither has, or
        none: where the table is (both, joined). None for settings load_settings did not build.
        """
        tables = [
            (str(source), table)
            for source, handlers in self._handler_sources
            if isinstance(table := handlers.get(name), Mapping)
        ]
        if setting is not None:
            for origin, table in tables:
                if setting in table:
                    return origin
        return " over ".join(origin for origin, _ in tables) or None

    def outside_dev(self) -> bool:
        """Whether nothing set the settings: no file read and no option or variable set the
        store, as a command run outside the folder `dev` runs in finds them (see OUTSIDE_DEV)."""
        return self.config is None and self._origins.get("store") == _unset("store")

    def set_in(self, field: str) -> str:
        """Where to fix ``field``, for an error about its value: ``--queues``,
        ``LAMBDA_DESTINATIONS_QUEUES``, ``queues in the TOML file x.toml``; the variable for
        settings load_settings did not build."""
        origin = self.origin(field) or f"{ENV_PREFIX}{field.upper()}"
        return f"{field} in {origin}" if origin.startswith("the TOML file") else origin

    def from_dev(self) -> bool:
        """Whether the settings came from the file `dev` wrote in this folder, with its endpoint
        (not one given by ``--endpoint-url`` or the environment, which dev's keys and hints do not
        concern)."""
        if self.config is None or self.config != DEV_CONFIG:
            return False
        import tomllib  # see read_toml

        try:
            written = tomllib.loads(DEV_CONFIG.read_text(encoding="utf-8")).get("endpoint_url")
        except (OSError, ValueError):  # gone or changed since it was read: not dev's for sure
            return False
        return isinstance(written, str) and written.strip() == self.endpoint_url

    def endpoint_fix(self) -> str:
        """What to check when the AWS endpoint does not answer, naming where the endpoint and
        the region were set (``--endpoint-url``, a TOML file, the variables); for dev's
        settings, whether dev runs (its endpoint lives as long as it does)."""
        if self.from_dev():
            return f"is `lambda-destinations dev` running in this folder? ({DEV_CONFIG} names it)"
        region = self.set_in("region") if self.region else standard_region_variable()
        if not self.endpoint_url:  # AWS itself: the region picks its endpoints
            return f"check {region} and the network"
        return f"check {self.set_in('endpoint_url')}, {region} and the network"

    def unreachable(self, problem: str) -> str:
        """The line for an AWS endpoint not reached (``problem``: the error's first line)."""
        return f"cannot reach {self.shown_endpoint()} ({problem}): {self.endpoint_fix()}"

    def not_aws_fix(self) -> str:
        """What to check when the endpoint answers, but not as AWS does (a web server's page,
        an empty 404): the endpoint URL, named where it was set; for AWS itself or dev's
        settings, what :meth:`endpoint_fix` says."""
        if not self.endpoint_url or self.from_dev():
            return self.endpoint_fix()
        return f"check that {self.set_in('endpoint_url')} is the URL of an AWS endpoint"

    def resolved_region(self) -> str | None:
        """The region the standard AWS way when not set here: the variables', else the AWS
        profile's, the one botocore's clients take (looked up once, when first asked)."""
        region = standard_region(self.region)
        if region is None:
            if self._profile is None:
                self._profile = aws_profile_region()
            region = self._profile[1]
        return region

    def region_source(self) -> SettingSource:
        """Where :meth:`resolved_region` found the region: this setting's source, the variable
        (``AWS_REGION``), or the AWS profile (its name) when only the profile sets one."""
        if self.region:
            return self.source("region")
        if standard_region():
            return SettingSource("env", standard_region_variable())  # AWS_REGION, the SDKs' way
        if self.resolved_region() and self._profile:
            return SettingSource("profile", self._profile[0])
        return self.source("region")

    def missing_profile(self) -> str | None:
        """The AWS profile named (``AWS_PROFILE``) when no region is found and the AWS config
        file has no such profile: "no region" alone sent its reader to AWS_REGION, not the
        profile's name."""
        if self.resolved_region() is None and self._profile and not self._profile[2]:
            return self._profile[0]
        return None

    def resolved_pollers_per_queue(self) -> int:
        """Concurrent receives per queue: ``pollers_per_queue``, else enough that each can ask
        for a full batch of ten (SQS's most a receive) within ``concurrency``; at least one."""
        return self.pollers_per_queue or max(1, self.concurrency // (10 * max(1, len(self.queues))))

    def poller_count(self) -> int:
        """Receives the worker may have under way at once, over every queue: each holds one of
        the SQS client's connections for up to ``wait_time`` seconds."""
        return self.resolved_pollers_per_queue() * len(self.queues)

    def shown_endpoint(self) -> str:
        """The endpoint as output may show it: no password, no query values; "AWS" when unset."""
        return mask_url(self.endpoint_url) if self.endpoint_url else "AWS"


def _is_nan(value: object) -> bool:
    """Whether ``value`` reads as NaN (``nan`` in the environment or the TOML file)."""
    if not isinstance(value, str | float):
        return False
    try:
        return math.isnan(float(value))
    except ValueError:
        return False  # no number at all: pydantic's line says so


def _not_finite(field: str, value: object) -> str:
    """The line for a number setting given ``value``, which is no finite number."""
    return number_line(
        Settings.model_fields[field], value, "is not a finite number", upper=_CHECKED_MAX.get(field)
    )


def boolean_problem(
    field: FieldInfo,
    value: object,
    *,
    upper: float | None = None,
    duration: Callable[[float], str] | None = None,
) -> str | None:
    """The line for the number ``field`` (a setting, a handler's option) given true or false,
    a TOML or JSON boolean, which pydantic would take as 1 or 0; None for any other value (or
    field). ``upper`` and ``duration`` as for :func:`number_problem`."""
    kind = _number_kind(field)
    if not isinstance(value, bool) or kind is None:
        return None
    problem = "is not a whole number" if kind is int else "is not a number"
    return number_line(field, value, problem, upper=upper, duration=duration)


def _number_problem(error: Mapping[str, Any]) -> str | None:
    """The line for pydantic's ``error`` of a number setting outside its range or given no
    number; None for any other error."""
    loc = error["loc"]
    field = str(loc[0]) if len(loc) == 1 else ""
    if field not in Settings.model_fields:
        return None
    return number_problem(Settings.model_fields[field], error, upper=_CHECKED_MAX.get(field))


# pydantic's errors of a number given outside its field's bounds, or no number at all: the line
# names the value, and the range the field takes (pydantic's named one bound, and no value).
_OUT_OF_BOUNDS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
_NOT_A_NUMBER = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_type": "is not a whole number",  # a TOML date, list or table
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
}


def number_problem(
    field: FieldInfo,
    error: Mapping[str, Any],
    *,
    upper: float | None = None,
    duration: Callable[[float], str] | None = None,
) -> str | None:
    """The line for pydantic's ``error`` of the number ``field`` (a setting, a handler's option)
    outside its range or given no number; None for any other error (or field). ``upper`` is
    an upper bound a validator checks rather than the Field; ``duration`` describes seconds
    (``300`` -> ``5 minutes``) for a field of seconds that takes "5m" too."""
    if _number_kind(field) is None:
        return None
    if error["type"] in _OUT_OF_BOUNDS:
        problem = "is out of range"
    elif error["type"] in _NOT_A_NUMBER:
        problem = _NOT_A_NUMBER[error["type"]]
    else:
        return None
    return number_line(field, error["input"], problem, upper=upper, duration=duration)


def number_line(
    field: FieldInfo,
    value: object,
    problem: str,
    *,
    upper: float | None = None,
    duration: Callable[[float], str] | None = None,
) -> str:
    """``value`` as given, its ``problem``, and the range ``field`` takes and its default:
    "0 is out of range: use a whole number from 1 to 1000 (32 by default)"."""
    if isinstance(value, float) and duration and math.isfinite(value):
        shown = duration(value)
    else:
        shown = _shown(value)
    default = field.default
    number: Callable[[float], str] = duration or (lambda bound: f"{bound:g}")
    taken = f" ({number(default)} by default)" if isinstance(default, int | float) else ""
    noun = (
        "a duration" if duration else "a whole number" if _number_kind(field) is int else "a number"
    )
    return f"{shown} {problem}: use {_number_range(field, upper, noun, number)}{taken}"


def _shown(value: object) -> str:
    """``value`` as a line refusing it repeats it: text as typed, numbers, ``true`` and lists
    as TOML and JSON write them (Python's ``True`` and ``[1, 2]`` are not what was typed)."""
    if isinstance(value, str):
        return echoed(value.strip()) or "an empty value"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool | int | list | tuple | dict):
        return echoed(json.dumps(value, default=str, ensure_ascii=False))
    if isinstance(value, dt.date | dt.time):  # a TOML date or time
        return value.isoformat()
    return echoed(str(value))


def _number_kind(field: FieldInfo) -> type | None:
    """int or float for a number field (optional or not), else None."""
    kinds = getattr(field.annotation, "__args__", (field.annotation,))
    return next((kind for kind in (int, float) if kind in kinds), None)


def _number_range(
    field: FieldInfo, upper: float | None, noun: str, number: Callable[[float], str]
) -> str:
    """The values a number field takes, by its bounds (ge, gt, le, lt) and ``upper``, in the
    words of :func:`number_range`."""
    bounds = {
        name: float(getattr(rule, name))
        for rule in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if getattr(rule, name, None) is not None
    }
    if upper is not None:
        bounds["le"] = upper
    return number_range(noun, bounds, number)


def standard_region_variable() -> str:
    """The variable the standard region comes from: ``AWS_REGION`` unless only
    ``AWS_DEFAULT_REGION`` is set (the one to fix, or to set when neither is)."""
    if not os.environ.get("AWS_REGION") and os.environ.get("AWS_DEFAULT_REGION"):
        return "AWS_DEFAULT_REGION"
    return "AWS_REGION"


def standard_region(region: str | None = None) -> str | None:
    """``region`` if given, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``: the SDKs' order.

    botocore reads only ``AWS_DEFAULT_REGION``; Lambda's runtime and the other SDKs set and read
    ``AWS_REGION``, so every client made here passes the region this finds.
    """
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def aws_profile_region() -> tuple[str, str | None, bool]:
    """The AWS profile in use (``AWS_PROFILE``'s, else ``default``), the region it sets in
    the AWS config file (``AWS_CONFIG_FILE``, else ~/.aws/config), as botocore reads them: the
    region its clients take when no variable sets one; and whether the profile exists (the
    ``default`` one need not: no region then, the clients say so). Imported here: botocore's
    session costs a command about 0.3 s, paid only by a command that needs the region and
    finds it nowhere else."""
    from botocore.exceptions import ConfigParseError, ProfileNotFound
    from botocore.session import Session

    session = Session()
    profile = session.get_config_variable("profile") or "default"
    try:
        return profile, session.get_config_variable("region"), True
    except ProfileNotFound:
        return profile, None, profile == "default"
    except ConfigParseError as exc:  # before: botocore's "Unable to parse config file", exit 1
        raise ConfigError(
            f"the AWS config file {exc.kwargs.get('path')} is not an INI file of profiles: "
            "correct it (as `aws configure` writes it), or set AWS_CONFIG_FILE to one that is, "
            "or set AWS_REGION"
        ) from None


def read_toml(path: Path, named_in: str = f"{ENV_PREFIX}CONFIG or --config") -> dict[str, Any]:
    """The TOML file's table, or ConfigError naming the file, what is wrong and the fix (in
    ``named_in``, where its path was given)."""
    # Imported here: most commands run with no settings file, and the parser costs each start.
    import tomllib

    try:
        # A UTF-8 byte order mark (Windows editors write one) is no TOML; the text after it is.
        text = _toml_bytes(path, named_in).removeprefix(codecs.BOM_UTF8).decode()
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: fix {named_in}") from None
    except IsADirectoryError:
        raise ConfigError(
            f"config file {path} is a folder: {_fix(path, _NAME_A_FILE + named_in)}"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror}): "
            f"{_fix(path, _NAME_A_FILE + named_in)}"
        ) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 text
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}): {_fix(path, 'save it as UTF-8')}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML ({exc}): {_fix(path, 'correct it there')}"
        ) from None
    except RecursionError:  # arrays or inline tables nested deeper than the parser goes
        raise ConfigError(
            f"config file {path} is nested too deep to read: {_fix(path, 'correct it there')}"
        ) from None


_NAME_A_FILE = "name a readable TOML file in "
# More than any settings file holds: what is longer is no settings file (a device that never
# ends, /dev/zero or /dev/urandom, which was read until memory ran out).
TOML_MAX = 16 << 20


def _toml_bytes(path: Path, named_in: str) -> bytes:
    """The file's bytes, or ConfigError when it holds more than :data:`TOML_MAX`."""
    with path.open("rb") as file:
        data = file.read(TOML_MAX + 1)
    if len(data) > TOML_MAX:
        raise ConfigError(
            f"config file {path} holds more than {TOML_MAX >> 20} MiB, more than a settings "
            f"file does: {_NAME_A_FILE}{named_in}"
        )
    return data


def _fix(path: Path, fix: str) -> str:
    """``fix``, or for the file `dev` writes, to let dev write it again (nobody edits it)."""
    if path == DEV_CONFIG:
        return "delete it, and `lambda-destinations dev` writes it again"
    return fix


# What botocore accepts as a region name (its own check raises a bare ValueError later).
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


def _both(first: str, second: str) -> str:
    """Where two settings that must agree are set, for an error about both."""
    return f"{ENV_PREFIX}{first.upper()} and {ENV_PREFIX}{second.upper()}, or the TOML file"


def _describe(
    error: dict[str, Any], overrides: Mapping[str, Any], file_data: Mapping[str, Any]
) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a check of two settings together: its message names both
        return message
    location = ".".join(str(part) for part in error["loc"])
    where = _origin(str(error["loc"][0]), overrides, file_data)
    if error["type"] == "extra_forbidden":  # only the TOML file can name a setting we lack
        return f"unknown setting {location!r} ({where}): {_known_instead(error['loc'])}"
    problem = _number_problem(error) or _kind_problem(error) or message
    return f"setting {location!r} ({where}): {problem}"


# pydantic's errors of a setting given a value of the wrong kind, and what the value is not:
# its own lines ("Input should be a valid list") name neither the value nor what to give.
_WRONG_KIND = {
    "list_type": "is not a list",
    "tuple_type": "is not a list",
    "dict_type": "is not a table",
    "model_type": "is not a table",
    "string_type": "is not a string",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "literal_error": "is not a value it takes",
    "too_short": "is empty",
}


def _kind_problem(error: Mapping[str, Any]) -> str | None:
    """The line for pydantic's ``error`` of a setting (or a part of one: a route's handlers)
    given a value of the wrong kind, or missing: the value as given, and what the setting
    takes; None for any other error."""
    loc = tuple(error["loc"])
    if error["type"] == "missing":  # its input is the table it is missing from
        return f"missing: add {loc[-1]}, {_takes(loc)}"
    if error["type"] not in _WRONG_KIND:
        return None
    return f"{_shown(error['input'])} {_WRONG_KIND[error['type']]}: {_kind_fix(loc, error)}"


def _kind_fix(loc: tuple[str | int, ...], error: Mapping[str, Any]) -> str:
    """What to give instead of a value of the wrong kind at ``loc``."""
    if error["type"] == "literal_error":
        return f"use {error['ctx']['expected']}"
    if error["type"].startswith("bool_"):
        default = Settings.model_fields[str(loc[0])].default if len(loc) == 1 else None
        taken = f" ({_shown(default)} by default)" if isinstance(default, bool) else ""
        return f"use true or false{taken}"
    if error["type"] == "string_type":
        if isinstance(loc[-1], int):  # an entry of a list
            return f"use {_takes(loc[:-1])}, each in quotes"
        return "write it in quotes"
    return f"use {_takes(loc)}"


# What the settings that are no number or string take, and their parts (* for any entry of a
# list or table), in the words of the README's Configuration.
_TAKES = {
    "queues": "a list of queue names or URLs",
    "handler_modules": "a list of module names",
    "routes": "a list of routes, each a table with handlers",
    "routes.*": "a table with handlers, and condition, function, error_type or queue to match",
    "routes.*.handlers": "a list of one or more handler names",
    "handlers": "a table of handlers by name, each a table with its type",
    "handlers.*": "a table with the handler's type and its settings",
    "accounts": "a table of roles by account id, each a table with role_arn (and external_id)",
    "accounts.*": "a table with role_arn (and external_id)",
}


def _takes(loc: tuple[str | int, ...]) -> str:
    """What the setting (or the part of one) at ``loc`` takes: "a list of module names"."""
    parts = ["*" if isinstance(part, int) else str(part) for part in loc]
    if parts[0] in ("handlers", "accounts") and len(parts) > 1:  # names, not numbers
        parts[1] = "*"
    return _TAKES.get(".".join(parts), "the form the README's Configuration shows")


def _first(errors: list[Any]) -> dict[str, Any]:
    """The error a line names: pydantic's first, but for one missing from a table (a route's
    handlers), a name misspelt in that table, the reason it is missing ({"handler": …})."""
    first = errors[0]
    if first["type"] == "missing":
        table = first["loc"][:-1]
        first = next(
            (e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == table),
            first,
        )
    return dict(first)


def _known_instead(loc: tuple[str | int, ...]) -> str:
    """The fix for an unknown setting at ``loc``: the closest known names, or where they are."""
    route = len(loc) > 1 and loc[0] == "routes"
    if len(loc) > 2 and loc[0] == "accounts":
        return "an account's table takes role_arn (required) and external_id"
    known = list(RouteConfig.model_fields if route else Settings.model_fields)
    close = difflib.get_close_matches(str(loc[-1]).lower(), known, n=2)
    if close:
        return "did you mean " + " or ".join(repr(name) for name in close) + "?"
    if route:
        required = {name for name, field in RouteConfig.model_fields.items() if field.is_required()}
        return "a route takes " + ", ".join(
            f"{name} (required)" if name in required else name for name in known
        )
    return "remove it, or use a setting the README's Configuration table lists"


# Variables of ours that are not settings: the console's sign-in token and public URL, and the
# secret ``*_env`` options may read their variables from.
_OTHER_VARIABLES = frozenset(
    {f"{ENV_PREFIX}CONSOLE_TOKEN", f"{ENV_PREFIX}CONSOLE_PUBLIC_URL", SECRETS_VARIABLE}
)


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``LAMBDA_DESTINATIONS_`` variable that is no setting but close to one.

    The environment source ignores variables it has no setting for: a misspelt one would change
    nothing, silently. Only close ones are named; the prefix is short enough that other tools'
    variables may carry it, and those are not ours to judge.
    """
    known = [name.upper() for name in Settings.model_fields]
    warnings = []
    for name in sorted(environ):
        # pydantic-settings matches variable names in any case
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in _OTHER_VARIABLES:
            continue
        setting = name.upper().removeprefix(ENV_PREFIX)
        if setting in known:
            continue
        head = setting.partition("__")[0]
        if head != setting and head in known:
            # pydantic-settings' nested delimiter, which these settings do not use
            warnings.append(
                f"{name} is no setting, ignored: a setting's parts are not set one by one: "
                f"give {ENV_PREFIX}{head} its whole value (JSON for handlers and routes), or "
                "set it in the TOML file"
            )
            continue
        close = difflib.get_close_matches(setting, known, n=1, cutoff=0.8)
        if close:
            warnings.append(f"{name} is no setting, ignored: did you mean {ENV_PREFIX}{close[0]}?")
    return warnings


# The settings whose errors name where they were set (Settings.origin).
_ORIGINS_KEPT = (
    "store",
    "queues",
    "endpoint_url",
    "region",
    "routes",
    "handler_modules",
    "visibility_timeout",
    "heartbeat_fraction",
)


def _origin(field: str, overrides: Mapping[str, Any], file_data: Mapping[str, Any]) -> str:
    """Where ``field``'s value came from, in the order the sources win; for a default, where
    it can be set."""
    source = _source(field, overrides, file_data)
    if source.kind == "default":
        return _unset(field)
    if field == "store" and source.kind == "file" and _kept_by_dev(file_data):
        # dev reads its own file too: a store it was once given stays until forgotten.
        return (
            f"the TOML file {DEV_CONFIG}, which keeps the store of an earlier "
            f"`dev --store`; give --store, or delete {DEV_CONFIG.parent}/ to forget it"
        )
    return str(source)


def _source(
    field: str, overrides: Mapping[str, Any], file_data: Mapping[str, Any]
) -> SettingSource:
    """Where ``field``'s value came from, in the order the sources win."""
    if field in overrides:
        return SettingSource("flag", f"--{field.replace('_', '-')}")
    if variables := _variables(field):
        return SettingSource("env", variables[0])
    if field in file_data:
        return SettingSource("file", str(file_data["config"]))
    return DEFAULT_SOURCE


def _kept_by_dev(file_data: Mapping[str, Any]) -> bool:
    """Whether the file is dev's and its store one dev was given, not dev's own SQLite file."""
    return Path(file_data["config"]) == DEV_CONFIG and file_data.get("store") != (
        f"sqlite:///{DEV_STORE}"
    )


def _handler_sources(
    overrides: Mapping[str, Any], file_data: Mapping[str, Any]
) -> list[tuple[SettingSource, Mapping[str, Any]]]:
    """The handler tables of the variable and of the TOML file, in the order they win (none
    when the caller gave its own, which replace both)."""
    if "handlers" in overrides:
        return []
    sources: list[tuple[SettingSource, Mapping[str, Any]]] = []
    for env_name in _variables("handlers"):
        with contextlib.suppress(ValueError):  # read before, as the settings' own value
            given = json.loads(os.environ[env_name])
            if isinstance(given, Mapping):
                sources.append((SettingSource("env", env_name), given))
    if isinstance(tables := file_data.get("handlers"), Mapping):
        sources.append((SettingSource("file", str(file_data["config"])), tables))
    return sources


def _variables(field: str) -> list[str]:
    """The variables setting ``field``, as the settings match them, in any case (a
    ``lambda_destinations_store`` sets the store): the one in capitals first."""
    env_name = env_variable(field)
    return sorted((name for name in os.environ if name.upper() == env_name), key=env_name.__ne__)


def env_variable(field: str) -> str:
    """The variable that sets ``field``: ``LAMBDA_DESTINATIONS_STORE``; ``ECS_AGENT_URI``,
    which ECS sets without the prefix."""
    alias = (
        Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
    )
    if isinstance(alias, AliasChoices):
        return next(str(name).upper() for name in alias.choices if name != field)
    return f"{ENV_PREFIX}{field.upper()}"


def _unset(field: str) -> str:
    """The origin of a setting nothing set: where it can be set."""
    return f"{ENV_PREFIX}{field.upper()} or the TOML file"


def _undecodable(exc: SettingsError) -> str:
    match = re.search(r'field "(\w+)"', str(exc))
    field = match[1] if match else "?"
    return (
        f"{ENV_PREFIX}{field.upper()} is not valid JSON: write it as JSON (the README's "
        f"Configuration shows each setting's form), or set {field} in the TOML file"
    )


def _file_settings(path: Path, named_in: str) -> dict[str, Any]:
    """The TOML file's settings, and its own path as ``config`` (the origin errors name);
    ``named_in`` is where the path was given, for the fix of a file that cannot be read."""
    table = read_toml(path, named_in)
    if "config" in table:
        # The file is named before it is read: a file it names could not be read in its turn,
        # and its path would replace the name without a word.
        raise ConfigError(
            f"setting 'config' (the TOML file {path}): a settings file cannot name another: "
            f"remove it, and name the file in {ENV_PREFIX}CONFIG or --config"
        )
    return {**table, "config": path}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once: overrides > environment > TOML file > defaults.

    Raises ConfigError with one line naming the first bad setting.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    path = config_file or overrides.get("config") or os.environ.get(f"{ENV_PREFIX}CONFIG")
    if not path and DEV_CONFIG.is_file():
        path = DEV_CONFIG
    source = _config_source(config_file or overrides.get("config"), path)
    file_data = _file_settings(Path(path), str(source)) if path else {}

    class _WithFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, file_data))

    try:
        loaded = _WithFile(**overrides)
    except ValidationError as exc:
        errors = exc.errors()
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(_describe(_first(errors), overrides, file_data) + extra) from None
    except SettingsError as exc:  # a value the environment source cannot decode (not JSON)
        raise ConfigError(_undecodable(exc)) from None
    except RecursionError:  # a variable's JSON nested deeper than the parser goes
        raise ConfigError(_too_deep()) from None
    # Hand out the plain class so nothing depends on the per-call subclass.
    settings = Settings.model_construct(
        **{name: getattr(loaded, name) for name in Settings.model_fields}
    )
    settings._origins = {name: _origin(name, overrides, file_data) for name in _ORIGINS_KEPT}
    settings._sources = {
        name: _source(name, overrides, file_data) for name in Settings.model_fields
    }
    settings._sources["config"] = source
    settings._handler_sources = _handler_sources(overrides, file_data)
    return settings


def _too_deep() -> str:
    """The line for a setting's JSON nested too deep to read, naming its variable."""
    fix = "write it as the README's Configuration shows"
    for name, value in sorted(os.environ.items()):
        if name.upper().startswith(ENV_PREFIX):
            try:
                json.loads(value)
            except RecursionError:
                return f"{name} is nested too deep to read: {fix}"
            except ValueError:
                continue
    return f"a setting is nested too deep to read: {fix}"


def _config_source(given: object, path: object) -> SettingSource:
    """Where the TOML file's name came from, as load_settings looks: --config, the variable,
    or none (no file, or the one `dev` wrote in this folder, read by default)."""
    if given:
        return SettingSource("flag", "--config")
    if os.environ.get(f"{ENV_PREFIX}CONFIG"):
        return SettingSource("env", f"{ENV_PREFIX}CONFIG")
    if path:  # found in this folder
        return SettingSource("default", "`dev`'s file, found in this folder")
    return DEFAULT_SOURCE
