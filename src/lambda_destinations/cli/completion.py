"""``completion``: print the shell completion script for bash, zsh or fish."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from lambda_destinations.cli._app import cli, command

PROG = "lambda-destinations"
COMPLETE_VAR = "_LAMBDA_DESTINATIONS_COMPLETE"


@command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell: str) -> None:
    """Print the shell completion script: bash, zsh or fish.

    Commands, subcommands and options complete with Tab once the script is loaded.

    \b
    Examples:
      eval "$(lambda-destinations completion bash)"      # in ~/.bashrc
      eval "$(lambda-destinations completion zsh)"       # in ~/.zshrc
      lambda-destinations completion fish > ~/.config/fish/completions/lambda-destinations.fish
    """
    completion = get_completion_class(shell)
    assert completion is not None  # click knows the three choices
    click.echo(completion(cli, {}, PROG, COMPLETE_VAR).source())
