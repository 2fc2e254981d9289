"""Building handler instances from the settings: built-ins, named instances, user code."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import re
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers.base import Handler, as_handler, marked_name
from lambda_destinations.handlers.routing import Route, Router, queue_matches
from lambda_destinations.redact import echoed

Factory = Callable[[str, dict[str, Any], Settings], Handler]

# Built-in handler types: type name -> its factory's module and name, imported when a route
# names the type (a worker that sends no SMS loads no phone-number metadata). A factory takes
# (name, options, settings) and returns a Handler; it validates its options and raises
# ConfigError naming the setting.
BUILTIN_TYPES: dict[str, str] = {
    "persist": "lambda_destinations.handlers.persist:build",
    "sms": "lambda_destinations.handlers.sms:build",
    "email": "lambda_destinations.handlers.email:build",
    "replay": "lambda_destinations.handlers.replay:build",
    "replay-outcome": "lambda_destinations.handlers.replay:build_outcome",
    "webhook": "lambda_destinations.handlers.webhook:build",
}
# The condition of a success record (what an exact condition in a route must name to take it).
SUCCESS_CONDITION = "Success"


def _import(reference: str, what: str) -> Any:
    module_name, colon, attribute = reference.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")):
        # import_module would raise about itself (relative imports, empty names), or read
        # "myapp/destinations.py" as a module that is not found
        raise ConfigError(
            f"{what}: {echoed(module_name)!r} is not a module name: write it as Python imports "
            "it, such as myapp.destinations (a file's path is not one)"
        )
    if colon and not attribute:
        raise ConfigError(
            f"{what}: nothing follows ':': write module:function, such as myapp.destinations:notify"
        )
    with _interrupts() as interrupted:
        try:
            module = importlib.import_module(module_name)
        # Whatever user code raises while imported is a setup to fix, BaseExceptions too
        # (KeyboardInterrupt, GeneratorExit, a class of its own): none comes from outside
        # but a Ctrl-C, which is the user's, and a cancellation reaches no synchronous call.
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and interrupted:
                raise
            raise ConfigError(_import_failed(module_name, what, exc)) from None
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{what}: module {module_name!r} has no {attribute!r}") from None


def _import_failed(module_name: str, what: str, exc: BaseException) -> str:
    """The line for ``exc``, raised by importing ``module_name``: what went wrong and the fix."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and _is_within(module_name, exc.name):
        # The module itself is not found, not one of its own imports: say where it must be,
        # or, named by its file (myapp.destinations.py), how Python names it.
        fix = ": install it in the worker's environment, or add its folder to PYTHONPATH"
        if exc.name == module_name and module_name.endswith(".py"):
            fix = f": write it without .py, as {module_name.removesuffix('.py')}"
        return f"{what}: cannot import module {module_name!r} ({exc}){fix}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        # One of the module's own imports: a package it needs is missing.
        fix = f": install {exc.name.partition('.')[0]} in the worker's environment"
        return f"{what}: cannot import module {module_name!r} ({exc}){fix}"
    if isinstance(exc, ImportError):
        return f"{what}: cannot import module {module_name!r} ({exc})"
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}"
        return f"{what}: module {module_name!r} has a syntax error at {where} ({exc.msg}): fix it"
    if isinstance(exc, SystemExit):
        # An exit while imported would end the worker with its code and no word of why.
        return (
            f"{what}: module {module_name!r} called sys.exit({exc.code!r}) while imported: "
            "a handler module must not exit"
        )
    return f"{what}: importing module {module_name!r} raised {_raised(exc)}: fix the module"


@contextlib.contextmanager
def _interrupts() -> Iterator[list[int]]:
    """The SIGINTs (Ctrl-C) received while the block runs, each passed on to the handler there
    was: a KeyboardInterrupt one of them raised is the user's, any other the code's own.

    Only the main thread receives signals, and only a Python handler raises one; elsewhere,
    or under another handler, nothing is watched and no KeyboardInterrupt is the user's."""
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield seen
        return

    def note(signum: int, frame: FrameType | None) -> Any:
        seen.append(signum)
        return previous(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        if signal.getsignal(signal.SIGINT) is note:  # unless the module set its own
            signal.signal(signal.SIGINT, previous)


def _is_within(module_name: str, package: str) -> bool:
    """Whether ``package`` is ``module_name`` or one of the packages that hold it."""
    return module_name == package or module_name.startswith(f"{package}.")


def _raised(exc: BaseException) -> str:
    """``Type: text (file:line)``: an exception and the user's line that raised it (not ours:
    ``@handler`` on a plain function raises in this package), without a traceback."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # The package's folder with its separator: a team's lambda_destinations_x beside it is not ours.
    ours = os.path.join(Path(__file__).parents[1], "")
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith((ours, "<frozen "))
    ]
    return f"{text} ({frames[-1].filename}:{frames[-1].lineno})" if frames else text


def handler_type(settings: Settings, name: str) -> str:
    """The type a route's handler name stands for: its table's ``type``, else the name."""
    options = settings.handlers.get(name)
    return name if options is None else str(options.get("type", name))


def replay_outcomes_linked(settings: Settings) -> bool | None:
    """Whether a route a success can take links replays' outcomes; None if nothing replays.

    A replay that recovers sends a success record; only ``replay`` or ``replay-outcome`` on a
    route that matches successes marks the attempt recovered. Routes' other filters (function,
    queue) are not weighed: False means a setup that can never link, not every gap.
    """
    replays = linked = False
    for route in settings.routes:
        kinds = {handler_type(settings, name) for name in route.handlers}
        replays = replays or "replay" in kinds
        takes_successes = (
            route.condition.lower() in ("success", "any") or route.condition == SUCCESS_CONDITION
        )
        linked = linked or (takes_successes and bool(kinds & {"replay", "replay-outcome"}))
    return linked if replays else None


# The built-in handlers that alert a person (and group alert storms into digests).
NOTIFIER_TYPES = frozenset({"sms", "email", "webhook"})


def routed_notifiers(settings: Settings, queues: Sequence[tuple[str, str]]) -> list[str]:
    """The names of the built-in notifiers (``sms``, ``email``, ``webhook``) that a route
    sends records of any of ``queues`` (name, URL) to, in the routes' order. Conditions and
    function globs are not weighed: a record of these queues may match them."""
    names: dict[str, None] = {}
    for route in settings.routes:
        if route.queue is not None and not any(
            queue_matches(route.queue, name, url) for name, url in queues
        ):
            continue
        names.update(
            (name, None)
            for name in route.handlers
            if handler_type(settings, name) in NOTIFIER_TYPES
        )
    return list(names)


def configured_handlers(settings: Settings) -> list[str]:
    """Each handler name the routes use, then each ``[handlers.NAME]`` table no route names
    (yet): every one is built at start, as the README promises every setting is checked."""
    names: dict[str, None] = {}
    for route in settings.routes:
        names.update(dict.fromkeys(route.handlers))
    names.update(dict.fromkeys(settings.handlers))
    return list(names)


def _user_handler(
    name: str, target: Any, where: str, options: dict[str, Any] | None = None
) -> Handler:
    """A user's function or object as a handler; ConfigError naming ``where`` when it is not."""
    try:
        built = as_handler(name, target, options)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(built.name, str) or not built.name.strip():
        # Its runs are claimed, completed, counted and logged by this name.
        raise ConfigError(
            f"{where}: the handler object's name is {built.name!r}: give it a name, as text"
        )
    return built


def _decorated(what: str, name: str, value: Any, found: dict[str, Any]) -> Any:
    """A ``@handler`` function of the handler module ``what`` names; ConfigError when its name
    is a built-in's, which routes and tables would resolve to the built-in, never to it, or
    another function's of ``found`` (the handlers found so far), which one of them would
    silently replace."""
    if name in BUILTIN_TYPES:
        raise ConfigError(
            f"{what}: @handler({name!r}) on {getattr(value, '__qualname__', name)}: "
            f"{name!r} is a built-in handler's name: choose another"
        )
    other = found.get(name, value)
    if other is not value:  # the same function twice (imported by a second module) is one
        raise ConfigError(
            f"{what}: @handler({name!r}) on {_function(value)}: {_function(other)} has that "
            "name too: give each handler a name of its own"
        )
    return value


def _function(value: Any) -> str:
    """``module.qualname`` of a ``@handler`` function, as its author wrote it."""
    qualname = getattr(value, "__qualname__", repr(value))
    module = getattr(value, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def _unmarked(modules: list[str]) -> str:
    """`` (handler_modules entry 'x' has no @handler function)``: a module listed with no
    handler in it, its decorator forgotten most likely; empty when there is none."""
    if not modules:
        return ""
    if len(modules) == 1:
        return f" (handler_modules entry {modules[0]!r} has no @handler function)"
    return f" (handler_modules entries {', '.join(map(repr, modules))} have no @handler function)"


def _close(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the one of ``known`` closest to ``name``; empty when none is:
    among many routes and tables, a typo is easier fixed when named than found in a list."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _placed(message: str, name: str, settings: Settings) -> str:
    """``message``, about the ``[handlers.NAME]`` table, with where the setting it names was
    set after its path (``handlers.hook.url (the TOML file x.toml): …``): the TOML file and
    the variable are merged setting by setting, so the path alone does not say which to fix."""
    path = re.match(rf"handlers\.{re.escape(name)}(?:\.(\w+))?[^:]*(?=: )", message)
    origin = path and settings.handler_origin(name, path[1])
    if not path or not origin:
        return message
    return f"{message[: path.end()]} ({origin}){message[path.end() :]}"


class HandlerRegistry:
    """Resolves the names used in routes to handler instances, once, at start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._instances: dict[str, Handler] = {}
        self._decorated: dict[str, Any] = {}
        # Where the list was set, for its lines: the variable or the TOML file, one of them.
        origin = settings.origin("handler_modules")
        placed = f" ({origin})" if origin and not origin.startswith("--") else ""
        self._empty: list[str] = []  # the handler modules with no @handler function
        for module_name in settings.handler_modules:
            what = f"handler_modules entry {module_name!r}{placed}"
            marked = [
                (name, value)
                for value in vars(_import(module_name, what)).values()
                if (name := marked_name(value)) is not None
            ]
            for name, value in marked:
                self._decorated[name] = _decorated(what, name, value, self._decorated)
            if not marked:
                self._empty.append(module_name)

    def add(self, handler: Handler) -> None:
        """Register a handler object directly (tests, embedding applications)."""
        self._instances[handler.name] = handler

    def get(self, name: str) -> Handler:
        """The handler called ``name`` in a route; ConfigError when nothing has that name."""
        if name in self._instances:
            return self._instances[name]
        handler = self._build(name)
        self._instances[name] = handler
        return handler

    def _build(self, name: str) -> Handler:
        options = self._settings.handlers.get(name)
        if options is not None:
            try:
                return self._from_table(name, dict(options))
            except ConfigError as exc:
                raise ConfigError(_placed(str(exc), name, self._settings)) from None
        if name in BUILTIN_TYPES:
            return self._from_type(name, name, {})
        if name in self._decorated:
            return _user_handler(name, self._decorated[name], f"handler {name!r}")
        if ":" in name:
            target = _import(name, f"handler {name!r}")
            return _user_handler(name, target, f"handler {name!r}")
        known = sorted({*BUILTIN_TYPES, *self._settings.handlers, *self._decorated})
        raise ConfigError(
            f"handler {name!r} is not defined{_close(name, known)}: use one of {', '.join(known)}, "
            f"a [handlers.NAME] table, or module:function{_unmarked(self._empty)}"
        )

    def _from_table(self, name: str, options: dict[str, Any]) -> Handler:
        """The handler the ``[handlers.NAME]`` table ``options`` makes."""
        if "type" not in options and name not in {*BUILTIN_TYPES, *self._decorated}:
            # The table's name stands for its type only when it names a handler: with handler
            # modules, most likely a @handler's, whose name or decorator is wrong.
            unnamed = close = ""
            if self._settings.handler_modules:
                unnamed = f", and no @handler of handler_modules is named {name!r}"
                close = _close(name, list(self._decorated))
            raise ConfigError(
                f"handlers.{name}: no type{unnamed}{close}: add type = one of "
                f"{', '.join(sorted(BUILTIN_TYPES))} or module:function{_unmarked(self._empty)}"
            )
        kind = str(options.pop("type", name))
        if (name in BUILTIN_TYPES or name in self._decorated) and kind != name:
            # Every route naming it, and the default route's persist, would run this one, and
            # a @handler of that name never.
            named = (
                "a built-in handler's name"
                if name in BUILTIN_TYPES
                else f"the name of @handler {_function(self._decorated[name])}"
            )
            raise ConfigError(
                f"handlers.{name}: {name!r} is {named}, and the table makes it a {kind} "
                "handler: give the table another name (and the routes that use it)"
            )
        return self._from_type(name, kind, options)

    def _from_type(self, name: str, kind: str, options: dict[str, Any]) -> Handler:
        if kind in BUILTIN_TYPES:
            factory: Factory = _import(BUILTIN_TYPES[kind], f"handler type {kind!r}")
            return factory(name, options, self._settings)
        if kind in self._decorated:
            return _user_handler(name, self._decorated[kind], f"handlers.{name}", options)
        if ":" in kind:
            target = _import(kind, f"handlers.{name}.type")
            return _user_handler(name, target, f"handlers.{name}.type", options)
        raise ConfigError(
            f"handlers.{name}.type: {kind!r} is unknown: use one of "
            f"{', '.join(sorted(BUILTIN_TYPES))} or module:function"
        )

    def configured(self, name: str) -> Handler:
        """:meth:`get` for a name of :func:`configured_handlers`: one no table or module
        defines is the routes' own, and the line says where they were set (``handler 'x'
        (routes in the TOML file x.toml) is not defined: …``)."""
        try:
            return self.get(name)
        except ConfigError as exc:
            origin = self._settings.origin("routes")
            if name in self._settings.handlers or name in self._decorated:
                raise  # about the table or the module, which its line names
            if origin is None or origin.startswith("--"):
                raise  # given in Python (load_settings(routes=…)): no file or variable to name
            named = f"handler {name!r}"
            placed = f"{named} ({self._settings.set_in('routes')})"
            raise ConfigError(str(exc).replace(named, placed, 1)) from None

    def _each_name_once(self, names: list[str]) -> None:
        """ConfigError when two of ``names`` are different handlers of one name (a handler
        object names itself): its runs are claimed and completed by that name, so one would
        take the other's completion for its own and never run again for the record."""
        seen: dict[str, tuple[str, Handler]] = {}
        for name in names:
            handler = self.get(name)
            first, other = seen.setdefault(handler.name, (name, handler))
            if other is not handler:
                raise ConfigError(
                    f"handler {name!r} is an object named {handler.name!r}, as handler "
                    f"{first!r} is named: runs are recorded done by name, so one would count "
                    "the other's as its own and never run: give the object a name of its own"
                )

    def router(self) -> Router:
        """Build every route's chain now, so a bad name fails at start, not on a message; and
        every configured handler, so a table no route uses yet is checked as well."""
        for name in configured_handlers(self._settings):
            self.configured(name)
        self._each_name_once([*configured_handlers(self._settings), "persist"])
        routes = [
            Route(
                chain=tuple(self.get(name) for name in config.handlers),
                condition=config.condition,
                function=config.function,
                error_type=config.error_type,
                queue=config.queue,
            )
            for config in self._settings.routes
        ]
        return Router(routes, default=(self.get("persist"),))
