"""The console script's entry point: the command's own modules are imported under its Ctrl-C.

Importing the command line (click, the settings, the output helpers) takes the first tenths of a
second of every command; a Ctrl-C then was Python's traceback of the import. This module imports
nothing at its top, so the script's own import of it is over at once.
"""

from __future__ import annotations

import sys

# README, "Exit codes": Ctrl-C. cli._app's own (a test runs both): not imported from there, which
# is what this module imports under the Ctrl-C's handling.
EXIT_INTERRUPTED = 130


def main() -> None:
    """``lambda-destinations``: import the command line, then run it."""
    try:
        from lambda_destinations.cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    command()
