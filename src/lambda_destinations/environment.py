"""The variables ``*_env`` options name: the environment's own, else one secret's key.

A container platform gives a task its secrets as variables, one entry each (ECS's
``secrets``, Kubernetes' ``secretKeyRef``), and a template cannot grow an entry per variable a
team's handlers name. ``LAMBDA_DESTINATIONS_SECRETS`` holds one JSON object of names and
values instead (a Secrets Manager secret of key/value pairs, given whole): a name the
environment does not have is looked up there. The environment's own variable comes first,
even when empty, so a variable set on purpose is never overridden by the secret.
"""

from __future__ import annotations

import functools
import json
import os

from lambda_destinations.errors import ConfigError
from lambda_destinations.redact import echoed

SECRETS_VARIABLE = "LAMBDA_DESTINATIONS_SECRETS"
_AS_PAIRS = (
    "store it as key/value pairs: a JSON object of variable names and their text values, "
    'such as {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/…"}'
)

# What a value that is not text is, in JSON's words.
_JSON_KINDS = {
    bool: "true or false",
    int: "a number",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def variable(name: str) -> tuple[str | None, str | None]:
    """``name``'s value and where it was found (``name`` itself, or ``SECRETS_VARIABLE``);
    ``(None, None)`` when neither has it."""
    if name in os.environ:
        return os.environ[name], name
    value = secrets().get(name)
    return (value, SECRETS_VARIABLE) if value is not None else (None, None)


def required(name: str, where: str, *, give: str = "a value") -> str:
    """``name``'s value for the option ``where``: a ConfigError if it is unset or empty (an
    empty secret signs nothing, an empty header or URL sends nothing)."""
    value, found = variable(name)
    if value is None:
        if SECRETS_VARIABLE in os.environ:
            raise ConfigError(
                f"{where}: the environment variable {name} is not set, nor is it a key of "
                f"{SECRETS_VARIABLE}: add it to either"
            )
        raise ConfigError(f"{where}: the environment variable {name} is not set")
    if not value:
        what = (
            f"the environment variable {name}"
            if found == name
            else f"{SECRETS_VARIABLE}'s key {name}"
        )
        raise ConfigError(f"{where}: {what} is empty: give it {give}")
    return value


def secrets() -> dict[str, str]:
    """The names and values of ``SECRETS_VARIABLE``'s JSON object (none when it is unset)."""
    text = os.environ.get(SECRETS_VARIABLE)
    return _parsed(text) if text else {}


@functools.lru_cache(maxsize=1)
def _parsed(text: str) -> dict[str, str]:
    # Nothing of the text is echoed: it is the secret. JSON's position and a key's name are.
    try:
        found = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError(f"{SECRETS_VARIABLE} is not JSON ({where}): {_AS_PAIRS}") from None
    except RecursionError:  # nested deeper than the parser goes
        raise ConfigError(f"{SECRETS_VARIABLE} is nested too deep: {_AS_PAIRS}") from None
    if not isinstance(found, dict):
        raise ConfigError(f"{SECRETS_VARIABLE} is JSON but not an object: {_AS_PAIRS}")
    for key, value in found.items():
        if not isinstance(value, str):
            raise ConfigError(
                f"{SECRETS_VARIABLE}'s key {echoed(key)!r} holds {_JSON_KINDS[type(value)]}, "
                f"not text: {_AS_PAIRS}"
            )
    return found
