"""``config``: the settings in effect, each with where it came from, secrets masked.

Offline and light: nothing asks AWS or the store, and (without ``--check``) no handler is
built, so neither the AWS clients, the worker nor SQLAlchemy are imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import click

from lambda_destinations import environment
from lambda_destinations.cli._app import command
from lambda_destinations.cli._common import dumps
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import render_table
from lambda_destinations.config import (
    ENV_PREFIX,
    RouteConfig,
    Settings,
    SettingSource,
)
from lambda_destinations.environment import SECRETS_VARIABLE
from lambda_destinations.redact import (
    MASK,
    mask_typed_phone,
    mask_url,
    redact_value,
    secret_name,
    url_origin,
)

# What a setting left unset means, for the table (its JSON value is null).
_UNSET = {
    "config": "none",
    "endpoint_url": "AWS",
    "region": "none: set AWS_REGION",
    "pollers_per_queue": "enough to fill concurrency",
    "visibility_timeout": "the queue's own",
    "ops_host": "run: 0.0.0.0, dev: 127.0.0.1",
}
# Settings that are URLs: shown with their password and query values masked.
_URLS = frozenset({"store", "endpoint_url", "ecs_agent_uri"})
# Handler options that are phone numbers, masked in whatever form they were typed.
_PHONES = frozenset({"phone_numbers", "origination_number"})
# Variables of ours that are no settings, and the proxies the AWS clients and webhooks take.
_CONSOLE_TOKEN = f"{ENV_PREFIX}CONSOLE_TOKEN"
_CONSOLE_PUBLIC_URL = f"{ENV_PREFIX}CONSOLE_PUBLIC_URL"
_PROXIES = ("https_proxy", "http_proxy", "no_proxy")


def _source(source: SettingSource) -> dict[str, str | None]:
    return {"source": source.kind, "from": source.name}


def _variable(name: object) -> object:
    """A ``*_env`` option's value: the variable's name and whether it is set, never its
    value."""
    if isinstance(name, str):
        value, found = environment.variable(name)
        return {"variable": name, "set": bool(value), "from": found}
    if isinstance(name, Mapping):  # headers_env: header -> variable
        return {key: _variable(value) for key, value in name.items()}
    return redact_value(name)


def _url_shown(value: object) -> object:
    """A handler's URL: its scheme, host and port; the path and query, where a webhook's
    token is as often as not, as ``***``."""
    if not isinstance(value, str):
        return redact_value(value)
    origin = url_origin(value)
    rest = value.split("://", 1)[-1].partition("/")[2]
    return f"{origin}/{MASK}" if rest and origin != MASK else origin


def shown_option(key: str, value: Any) -> Any:
    """A handler's option as output may show it: secrets (by name: ``password``, ``secret``,
    ``token``...; every header's value; a URL's path and query) masked, a ``*_env`` option as
    its variable and whether it is set, anything else through :func:`redact_value`."""
    if key.endswith("_env"):
        return _variable(value)
    if value is not None and secret_name(key):
        return MASK
    if key == "headers" and isinstance(value, Mapping):
        return dict.fromkeys(value, MASK)
    if key == "url" or key.endswith("_url"):
        return _url_shown(value)
    if key in _PHONES:
        return _phones_shown(value)
    return redact_value(value)


def _phones_shown(value: object) -> object:
    """An ``sms`` handler's numbers (one, or a list), each masked as logs mask one, spaced or
    national too (``+33 6 12 34 56 78``), which :func:`redact_value` reads as no number."""
    if isinstance(value, str):
        return mask_typed_phone(value)
    if isinstance(value, list):
        return [_phones_shown(each) for each in value]
    return redact_value(value)


def _handlers(settings: Settings) -> dict[str, Any]:
    """Each ``[handlers.NAME]`` table: its type, and each of its options with where it was
    set (the variable's JSON and the TOML file are merged option by option)."""
    shown: dict[str, Any] = {}
    for name, table in settings.handlers.items():
        options = {
            key: {"value": shown_option(key, value), **_source(settings.handler_source(name, key))}
            for key, value in table.items()
        }
        shown[name] = {"type": str(table.get("type", name)), "settings": options}
    return shown


def _route(route: RouteConfig) -> dict[str, Any]:
    return {"condition": route.condition, **route.model_dump(exclude={"condition"})}


def _value(settings: Settings, field: str) -> Any:
    """``field``'s value as output may show it."""
    value = getattr(settings, field)
    if field in _URLS and value:
        return mask_url(value)
    if field == "region":
        return settings.resolved_region()
    if field == "routes":
        return [_route(route) for route in value]
    if field == "handlers":
        return _handlers(settings)
    if field == "accounts":  # the external id is the role's shared secret
        return {
            account: {"role_arn": role.role_arn, "external_id": role.external_id and MASK}
            for account, role in value.items()
        }
    return redact_value(str(value) if field == "config" and value else value)


def _setting_source(settings: Settings, field: str) -> SettingSource:
    return settings.region_source() if field == "region" else settings.source(field)


def _environment() -> dict[str, Any]:
    """What the tool reads from the environment beside its settings: the console's sign-in
    token (whether it is set) and public URL, and the proxies of its HTTP calls."""
    token = os.environ.get(_CONSOLE_TOKEN)
    public = os.environ.get(_CONSOLE_PUBLIC_URL)
    found = {
        "console_token": {"value": "set" if token else None, **_env_source(_CONSOLE_TOKEN)},
        "console_public_url": {
            "value": mask_url(public) if public else None,
            **_env_source(_CONSOLE_PUBLIC_URL),
        },
    }
    names = sorted(environment.secrets())
    found["secrets"] = {
        "value": f"{len(names)} {'key' if len(names) == 1 else 'keys'}: {', '.join(names)}"
        if names
        else None,
        **_env_source(SECRETS_VARIABLE),
    }
    for proxy in _PROXIES:
        variable, value = _proxy_variable(proxy)
        shown = value if proxy == "no_proxy" or not value else _proxy_shown(value)
        found[proxy] = {"value": shown, **_env_source(variable if value else None)}
    return found


def _env_source(variable: str | None) -> dict[str, str | None]:
    if variable is None or not os.environ.get(variable):
        return _source(SettingSource("default"))
    return _source(SettingSource("env", variable))


def _proxy_variable(proxy: str) -> tuple[str, str | None]:
    """The variable naming ``proxy`` and its value: the lower-case name first, as urllib,
    botocore and curl read them."""
    for variable in (proxy, proxy.upper()):
        if os.environ.get(variable):
            return variable, os.environ[variable]
    return proxy.upper(), None


def _proxy_shown(url: str) -> str:
    """A proxy's scheme, host and port, never its credentials (its module is imported only
    when a proxy is set: it loads urllib.request)."""
    from lambda_destinations._proxy import Proxy

    return Proxy(url if "://" in url else f"http://{url}", "").shown


def effective(settings: Settings, *, built: bool) -> dict[str, Any]:
    """The settings in effect as ``config --json`` prints them."""
    return {
        "settings": {
            field: {"value": _value(settings, field), **_source(_setting_source(settings, field))}
            for field in Settings.model_fields
        },
        "environment": _environment(),
        "handlers_built": built,
    }


def _text(value: Any) -> str | None:
    """A shown value on one line of the table: lists and tables as ``a, b``, ``k = v``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"  # 25, as the README's table and the error lines write it
    if isinstance(value, Mapping) and set(value) == {"variable", "set", "from"}:
        state = "set" if value["set"] else "not set"
        if value["set"] and value["from"] != value["variable"]:
            state = f"set, in {value['from']}"  # the secret's key
        return f"{value['variable']} ({state})"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} = {_text(each)}" for key, each in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(str(_text(each)) for each in value) or "none"
    return str(value)


def _route_text(route: Mapping[str, Any]) -> str:
    """``failure: persist, mail (function orders-*)``: what a route takes, and its chain."""
    filters = [f"{key} {route[key]}" for key in ("function", "error_type", "queue") if route[key]]
    where = f" ({', '.join(filters)})" if filters else ""
    return f"{route['condition']}: {', '.join(route['handlers'])}{where}"


def _takes_every_record(route: Mapping[str, Any]) -> bool:
    """Whether a route matches every record: condition any, no glob to pass."""
    globs = ("function", "error_type", "queue")
    return str(route["condition"]).lower() == "any" and not any(route[key] for key in globs)


def _source_text(entry: Mapping[str, Any]) -> str:
    return str(SettingSource(entry["source"], entry["from"]))


def _handler_rows(entry: Mapping[str, Any]) -> Iterator[list[object]]:
    """A row per option of each handler table, its type first."""
    if not entry["value"]:
        yield ["handlers", "none", _source_text(entry)]
    for name, handler in entry["value"].items():
        options = handler["settings"]
        if "type" not in options:  # a table named after a built-in handler is one
            yield [f"handlers.{name}.type", f"{handler['type']} (its name)", _source_text(entry)]
        for key, option in options.items():
            yield [f"handlers.{name}.{key}", _text(option["value"]), _source_text(option)]


def _rows(shown: Mapping[str, Any]) -> Iterator[list[object]]:
    """The table's rows: a setting a row; a route, a handler's option and an account too."""
    for field, entry in shown["settings"].items():
        value = entry["value"]
        if field == "routes":
            for number, route in enumerate(value, 1):
                yield [f"routes[{number}]", _route_text(route), _source_text(entry)]
            if not any(_takes_every_record(route) for route in value):
                # The worker's own last route, which no list shows: say where the rest go.
                yield ["routes[else]", "any: persist (the records no route takes)", "default"]
        elif field == "handlers":
            yield from _handler_rows(entry)
        elif field == "accounts" and value:
            for account, role in value.items():
                yield [f"accounts.{account}", _text(role), _source_text(entry)]
        else:
            unset = _UNSET.get(field) if value is None else None
            yield [field, unset or _text(value), _source_text(entry)]
    for name, entry in shown["environment"].items():
        yield [name, _text(entry["value"]), _source_text(entry)]


@command("config")
@click.option(
    "--check",
    is_flag=True,
    help="Also build every handler from its settings, as `run` does at start (imports the "
    "handlers' modules; asks no AWS service).",
)
@click.option("--json", "as_json", is_flag=True, help="The settings as one JSON object.")
@settings_options
def config_command(settings: Settings, check: bool, as_json: bool) -> None:
    """Show the settings in effect, each with where it came from; secrets masked.

    \b
    Each setting's value and its source: default, the TOML file (its path), the variable
    (its name), or the command-line option. Routes are shown one a row, and each handler
    table's options one a row, each with where it was set (LAMBDA_DESTINATIONS_HANDLERS'
    JSON and the TOML file are merged option by option).

    \b
    Never shown: a URL's password and query values (the store, the endpoint, the console's
    public URL, a proxy's credentials), a handler's URL path and headers, a secret, password
    or token, the console's token, and the value of any variable a `*_env` option names (its
    name and whether it is set are), or of a key of LAMBDA_DESTINATIONS_SECRETS (its name is).

    \b
    Examples:
      lambda-destinations config
      lambda-destinations config --config lambda-destinations.toml --check
      lambda-destinations config --json | jq '.settings.store'

    Asks neither AWS nor the store. Invalid settings end in the line `run` gives, exit 3;
    with --check, so do handler settings (built as `run` builds them, without sending).
    """
    if check:
        # Imported here: the handlers' modules load the AWS clients and their libraries.
        from lambda_destinations.handlers.registry import HandlerRegistry

        HandlerRegistry(settings).router()
    shown = effective(settings, built=check)
    if as_json:
        click.echo(dumps(shown))
        return
    click.echo(
        render_table(["SETTING", "VALUE", "SOURCE"], list(_rows(shown)), flex=(1, 2), wrap=True)
    )
    if not check and (settings.handlers or settings.handler_modules):
        click.echo(
            "\nhandler settings shown as given: `config --check` builds them as `run` does",
            err=True,
        )
