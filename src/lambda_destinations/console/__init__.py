"""The browser console: server-rendered pages over the store and ``operations/``.

``lambda-destinations console`` serves it (:func:`serve`); tests and other servers may mount
:func:`create_app`. See ``app.py`` for how routes are organised and added.
"""

from lambda_destinations.console.app import (
    CONSOLE,
    Console,
    ConsoleOptions,
    create_app,
    require_token,
    serve,
)
from lambda_destinations.console.security import TOKEN_ENV, new_token

__all__ = [
    "CONSOLE",
    "TOKEN_ENV",
    "Console",
    "ConsoleOptions",
    "create_app",
    "new_token",
    "require_token",
    "serve",
]
