"""A process whose uid has no user name (OpenShift runs images as an arbitrary uid, with no
passwd entry and no USER): a PostgreSQL URL without a user cannot default to its name.

asyncpg, as libpq, connects as the process's user name when the URL names none, and raised
getpass's KeyError (a traceback) for each connection. The shared virtual environment here is
not readable by another uid, so the test stands in getpass.getuser's refusal in process; the
container tests run the image as such a uid for real.
"""

from __future__ import annotations

import getpass

import pytest
from click.testing import CliRunner

from lambda_destinations.cli import cli

URL = "postgresql://127.0.0.1:5432/postgres"


def no_name() -> str:
    raise KeyError("getpwuid(): uid not found: 1000870000")


def test_a_store_url_without_a_user_says_to_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: no user name for this uid, no PGUSER
    monkeypatch.setattr(getpass, "getuser", no_name)
    monkeypatch.delenv("PGUSER", raising=False)

    # when: a command opens a store whose URL names no user
    result = CliRunner().invoke(cli, ["failures", "list", "--store", URL])

    # then: exit 3, one line: name the user in the URL or set PGUSER
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: store URL {URL!r} (--store): the URL names no user")
    assert line.endswith("postgresql://user@host:5432/dbname, or set PGUSER")


def test_pguser_names_the_user_then(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(getpass, "getuser", no_name)
    monkeypatch.setenv("PGUSER", "root")

    result = CliRunner().invoke(cli, ["failures", "list", "--store", URL])

    assert "names no user" not in result.stderr
