"""The `lambda-destinations` command."""

from __future__ import annotations

import importlib

from lambda_destinations.cli._app import cli

# Each module registers its commands on `cli` when imported.
_COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "dev",
    "decode",
    "failures",
    "replay",
    "dlq",
    "doctor",
)


def main() -> None:
    """Console-script entry point."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"lambda_destinations.cli.{name}")
    cli(prog_name="lambda-destinations")


__all__ = ["cli", "main"]
