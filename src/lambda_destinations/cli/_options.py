"""Options every command shares, and building the settings from them once."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import structlog

from lambda_destinations.config import (
    ENV_PREFIX,
    OUTSIDE_DEV,
    Settings,
    load_settings,
    misspelt_variables,
)
from lambda_destinations.errors import ConfigError, StoreUrlProblem
from lambda_destinations.logs import configure_logging
from lambda_destinations.redact import mask_url

P = ParamSpec("P")
R = TypeVar("R")

log = structlog.get_logger("lambda_destinations.cli")


def not_empty(fix: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback: the option's value as given; an empty one (``--queue ''``) a usage error
    saying ``fix``. Taken as not given, it did what leaving the option out does, silently (an
    empty variable click takes as unset: only the command line gives one)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise click.BadParameter(f"{value!r} is empty: {fix}")
        return value

    return check


def _config_file(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Path | None:
    """--config's file; an empty value a usage error (as a Path it was ".", and the line said
    "config file . is a folder", of a folder nobody named)."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            f"{value!r} is empty: name the TOML settings file, or leave the option out"
        )
    return None if value is None else Path(value)


_SETTING_OPTIONS = (
    click.option(
        "--config",
        "config_file",
        type=click.Path(),
        callback=_config_file,
        metavar="FILE",
        help="TOML settings file [env: LAMBDA_DESTINATIONS_CONFIG].",
    ),
    click.option(
        "--queues",
        help="Comma-separated queue URLs or names [env: LAMBDA_DESTINATIONS_QUEUES].",
    ),
    click.option("--store", help="Store URL [env: LAMBDA_DESTINATIONS_STORE]."),
    click.option(
        "--endpoint-url",
        help="One endpoint for every AWS service [env: LAMBDA_DESTINATIONS_ENDPOINT_URL].",
    ),
    click.option(
        "--region",
        # Empty, it was taken as not given: AWS_REGION's won over the settings' region.
        callback=not_empty(
            "give an AWS region name (us-east-1), or leave the option out for the settings' region"
        ),
        help="AWS region [env: LAMBDA_DESTINATIONS_REGION, else AWS_REGION].",
    ),
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        help="Log level [env: LAMBDA_DESTINATIONS_LOG_LEVEL].",
    ),
    click.option(
        "--log-format",
        type=click.Choice(["auto", "json", "console"]),
        help="Log format; auto: console on a terminal, JSON otherwise [env: "
        "LAMBDA_DESTINATIONS_LOG_FORMAT].",
    ),
)


def settings_options(func: Callable[P, R]) -> Callable[..., R]:
    """Add the shared options; the command receives ``settings: Settings`` instead of them.

    Extra keyword overrides a command wants to pass go through ``overrides`` in the context.
    """

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        config_file: Path | None,
        queues: str | None,
        store: str | None,
        endpoint_url: str | None,
        region: str | None,
        log_level: str | None,
        log_format: str | None,
        **kwargs: Any,
    ) -> R:
        try:
            settings = load_settings(
                config_file,
                queues=queues,
                store=store,
                endpoint_url=endpoint_url,
                region=region,
                log_level=log_level,
                log_format=log_format,
            )
        except ConfigError:
            # The settings' error is the one line written: a JSON one where JSON logs were
            # asked for (the image's variable), which a log pipeline reads as the others.
            if (log_format or os.environ.get(f"{ENV_PREFIX}LOG_FORMAT", "")).lower() == "json":
                configure_logging("json")
            raise
        configure_logging(settings.log_format, settings.log_level)
        for warning in misspelt_variables(os.environ):
            log.warning(warning)
        if settings.from_dev():
            # dev's endpoint accepts any keys: the commands after `dev` need none of their own.
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(name, "dev")
        try:
            return func(*args, settings=settings, **kwargs)  # type: ignore[arg-type]
        except StoreUrlProblem as exc:  # the store read the URL; only here is known where from
            raise exc.named(store_origin(settings)) from None

    for option in reversed(_SETTING_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def store_origin(settings: Settings) -> str | None:
    """Where the store URL came from, for an error about it. The default, with no settings file
    read, is what a command finds outside the folder `dev` runs in: the line says so."""
    if settings.outside_dev():
        return f"the default; {OUTSIDE_DEV}, or set {ENV_PREFIX}STORE"
    return settings.origin("store")


def hide_options(command: click.Command, *names: str) -> None:
    """Leave shared options out of a command's --help where they mean nothing to it."""
    for param in command.params:
        if param.name in names and isinstance(param, click.Option):
            param.hidden = True


def hide_password(url: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host`` (see :mod:`redact`)."""
    return mask_url(url)
