"""The handler author's API: one import surface, a narrow context, types read at start."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lambda_destinations
from lambda_destinations.config import RouteConfig, load_settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import FunctionHandler, HandlerContext, HandlerRegistry

HANDLER_SURFACE = {
    "DecodedMessage",
    "ErrorPayload",
    "HandlerContext",
    "InvocationRecord",
    "PermanentError",
    "QuarantineMessage",
    "RetryMessage",
    "TransientError",
    "handler",
}


def test_every_name_a_handler_needs_comes_from_the_package() -> None:
    assert set(lambda_destinations.__all__) >= HANDLER_SURFACE
    for name in lambda_destinations.__all__:
        assert getattr(lambda_destinations, name) is not None, name


def test_importing_the_package_loads_neither_handlers_nor_pydantic() -> None:
    probe = "import json, sys, lambda_destinations; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    loaded = set(json.loads(done.stdout))
    assert "lambda_destinations" in loaded
    assert not {"pydantic", "lambda_destinations.handlers", "lambda_destinations.schemas"} & loaded


def test_the_context_offers_no_store_aws_or_settings() -> None:
    public = {f.name for f in dataclasses.fields(HandlerContext) if not f.name.startswith("_")}

    assert public == {
        "queue_url",
        "queue_name",
        "message_id",
        "receive_count",
        "key",
        "log",
        "options",
    }


def registry_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, **settings: object
) -> HandlerRegistry:
    """A registry whose route names ``userhandlers:target``, written from ``source``."""
    (tmp_path / "userhandlers.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "userhandlers", raising=False)
    values: dict[str, object] = {
        "queues": ["q"],
        "store": f"sqlite:///{tmp_path / 'store.db'}",
        "routes": [RouteConfig(handlers=("userhandlers:target",))],
    }
    values.update(settings)
    return HandlerRegistry(load_settings(**values))


def test_a_first_parameter_of_another_type_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_for(
        tmp_path, monkeypatch, "async def target(record: int, context: object) -> None: ...\n"
    )

    with pytest.raises(ConfigError) as raised:
        registry.router()

    assert str(raised.value) == (
        "handler 'userhandlers:target': handler target: its first parameter is annotated "
        "<class 'int'>; use DecodedMessage or InvocationRecord[MyRequest, MyResponse]"
    )


def test_a_type_hint_that_does_not_resolve_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "from __future__ import annotations\n"
        "async def target(record: Missing, context: object) -> None: ...\n"
    )
    registry = registry_for(tmp_path, monkeypatch, source)

    with pytest.raises(ConfigError, match=r"cannot resolve its type hints \(name 'Missing'"):
        registry.router()


def test_a_handler_that_cannot_take_record_and_context_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_for(tmp_path, monkeypatch, "async def target(record) -> None: ...\n")

    with pytest.raises(ConfigError, match=r"must take two parameters: \(message, context\)"):
        registry.router()


def test_a_typed_handler_is_read_once_with_its_model_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "from pydantic import BaseModel\n"
        "from lambda_destinations import HandlerContext, InvocationRecord\n"
        "class Order(BaseModel):\n"
        "    orderId: str\n"
        "async def target(record: InvocationRecord[Order, None], context: HandlerContext)"
        " -> None: ...\n"
    )
    registry = registry_for(
        tmp_path,
        monkeypatch,
        source,
        routes=[RouteConfig(handlers=("orders",))],
        handlers={"orders": {"type": "userhandlers:target", "channel": "#orders"}},
    )

    (route,) = registry.router().routes
    (built,) = route.chain

    assert isinstance(built, FunctionHandler)
    assert built.model is not None
    assert built.model.__name__ == "InvocationRecord[Order, NoneType]"
    assert dict(built.options) == {"channel": "#orders"}


# Builds the worker's routes from the environment, as `run` does at start, and prints the
# modules then loaded.
_ROUTES_PROBE = """
import json, sys
from lambda_destinations.config import load_settings
from lambda_destinations.handlers import HandlerRegistry
HandlerRegistry(load_settings()).router()
print(json.dumps(sorted(sys.modules)))
"""
_SMS = ("lambda_destinations.handlers.sms", "phonenumbers")
_EMAIL_AND_WEBHOOK = ("lambda_destinations.handlers.email", "lambda_destinations.handlers.webhook")


@pytest.mark.parametrize(
    ("routes", "handlers", "loaded", "not_loaded"),
    [
        pytest.param(None, None, (), (*_SMS, *_EMAIL_AND_WEBHOOK), id="the default route"),
        pytest.param(
            [{"handlers": ["persist", "oncall"]}],
            {"oncall": {"type": "sms", "phone_numbers": ["+14155552671"]}},
            _SMS,
            _EMAIL_AND_WEBHOOK,
            id="a route with an sms handler",
        ),
    ],
)
def test_a_built_in_handler_is_imported_only_when_a_route_uses_it(
    tmp_path: Path,
    routes: list[dict[str, object]] | None,
    handlers: dict[str, object] | None,
    loaded: tuple[str, ...],
    not_loaded: tuple[str, ...],
) -> None:
    env = {"PATH": "", "LAMBDA_DESTINATIONS_QUEUES": "orders-success"}
    if routes is not None:
        env["LAMBDA_DESTINATIONS_ROUTES"] = json.dumps(routes)
    if handlers is not None:
        env["LAMBDA_DESTINATIONS_HANDLERS"] = json.dumps(handlers)

    done = subprocess.run(
        [sys.executable, "-c", _ROUTES_PROBE],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
    )

    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout))
    assert "lambda_destinations.handlers.persist" in modules
    assert set(loaded) <= modules
    assert not set(not_loaded) & modules


@pytest.mark.parametrize("mark", ["@handler", "@handler()", "@handler('notify')"])
def test_a_handler_marked_with_or_without_parentheses_is_found_by_its_name(
    mark: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the bare @handler the README's words invite (before: it returned the decorator's
    # own inner function in place of the handler, and the start said the module had none)
    source = (
        "from lambda_destinations import handler\n"
        f"{mark}\n"
        "async def notify(record, context) -> None: ...\n"
    )
    registry = registry_for(
        tmp_path,
        monkeypatch,
        source,
        handler_modules=["userhandlers"],
        routes=[RouteConfig(handlers=("notify",))],
    )

    # when
    built = registry.get("notify")

    # then: the module's function, unchanged, is the handler
    assert isinstance(built, FunctionHandler)
    assert built.func is sys.modules["userhandlers"].notify
    assert built.func.__name__ == "notify"


def test_a_handler_name_that_is_not_text_stops_the_import() -> None:
    with pytest.raises(TypeError, match=r"@handler\(name\) takes the handler's name as text"):
        lambda_destinations.handler(42)  # type: ignore[call-overload]


_NAMED_OBJECTS = (
    "class Hook:\n"
    "    def __init__(self, name):\n"
    "        self.name = name\n\n"
    "    async def __call__(self, message, context) -> None: ...\n\n\n"
    "as_persist = Hook('persist')\n"
    "first = Hook('shared')\n"
    "second = Hook('shared')\n"
    "nameless = Hook('')\n"
    "numbered = Hook(42)\n"
)


@pytest.mark.parametrize(
    ("handlers", "said"),
    [
        pytest.param(
            ("persist", "userhandlers:as_persist"),
            "handler 'userhandlers:as_persist' is an object named 'persist', as handler "
            "'persist' is named",
            id="a built-in's name",
        ),
        pytest.param(
            ("userhandlers:first", "userhandlers:second"),
            "handler 'userhandlers:second' is an object named 'shared', as handler "
            "'userhandlers:first' is named",
            id="another object's name",
        ),
        pytest.param(
            ("userhandlers:nameless",),
            "handler 'userhandlers:nameless': the handler object's name is ''",
            id="an empty name",
        ),
        pytest.param(
            ("userhandlers:numbered",),
            "handler 'userhandlers:numbered': the handler object's name is 42",
            id="a name that is not text",
        ),
    ],
)
def test_a_handler_object_needs_a_name_of_its_own(
    handlers: tuple[str, ...], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: handler objects, each named by itself (before: the route ran the object named
    # 'persist' too, its runs recorded done as persist's; once it failed, its redelivery found
    # 'persist' done, so it never ran again and the message was acknowledged as a duplicate)
    registry = registry_for(
        tmp_path, monkeypatch, _NAMED_OBJECTS, routes=[RouteConfig(handlers=handlers)]
    )

    # when
    with pytest.raises(ConfigError) as raised:
        registry.router()

    # then: the start stops, naming the route's entry and the fix
    assert str(raised.value).startswith(said), raised.value
    assert "\n" not in str(raised.value)
