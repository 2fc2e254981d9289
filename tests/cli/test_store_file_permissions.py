"""A SQLite store file this user may not read or write is configuration (exit 3), said as the
file's permissions, not as a store that cannot be reached (exit 4) or a disk that is full.

Root ignores permissions: run as root, the commands run as ``nobody`` (setpriv), and these
tests are skipped when that user cannot run this interpreter (a Python under /root, say).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

MAIN = ["-c", "from lambda_destinations.cli import main; main()"]
# The user the commands run as when this is root.
NOT_ROOT = "nobody"


def user() -> str:
    """The name of the user the commands run as."""
    return NOT_ROOT if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def _prefix() -> list[str]:
    """What runs a command as a user file permissions stop: nothing unless this is root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv to run the commands as a user other than root")
    gid = pwd.getpwnam(NOT_ROOT).pw_gid
    return [setpriv, f"--reuid={NOT_ROOT}", f"--regid={gid}", "--init-groups", "--reset-env"]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder the commands' user owns, where it may run this interpreter."""
    made = Path(tempfile.mkdtemp(prefix="store-permissions-"))
    try:
        made.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(made, NOT_ROOT)
        probe = cli("--version", cwd=made)
        if probe.returncode != 0:
            pytest.skip(f"{NOT_ROOT} cannot run {sys.executable}: {probe.stderr.strip()[-200:]}")
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lambda-destinations ARGS`` as the commands' user, in ``cwd``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    env |= {"LAMBDA_DESTINATIONS_OPS_PORT": "0", "LAMBDA_DESTINATIONS_LOG_FORMAT": "json"}
    env |= {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    # setpriv --reset-env would drop the environment: its variables go on the command line.
    command = [*_prefix(), "env", *(f"{key}={value}" for key, value in env.items())]
    return subprocess.run(
        [*command, sys.executable, *MAIN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        input="",
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def migrated_store(folder: Path, mode: int) -> str:
    """A store the commands' user migrated, its file then given ``mode``: its URL."""
    made = cli("migrate", "--store", "sqlite:///store.db", cwd=folder)
    assert made.returncode == 0, made.stderr
    (folder / "store.db").chmod(mode)
    return "sqlite:///store.db"


@pytest.mark.parametrize("args", [("failures", "list"), ("migrate",), ("prune",)])
def test_a_store_file_the_user_may_not_open_is_exit_3_naming_its_permissions(
    folder: Path, args: tuple[str, ...]
) -> None:
    # given: the store's file at mode 000, in a folder its user may write
    url = migrated_store(folder, 0o000)

    # when: a command opens it
    result = cli(*args, "--store", url, cwd=folder)

    # then: one line: the file's permissions and their fix, not "check the file's directory"
    assert result.returncode == 3, result.stderr
    assert error_lines(result) == [
        f"error: store {url} (--store): store.db is neither readable nor writable for user "
        f"{user()} (mode 000, owner {user()}): fix its permissions or owner (chmod 600 store.db)"
    ]


@pytest.mark.parametrize("args", [("migrate",), ("migrate", "--check"), ("prune",)])
def test_writing_to_a_read_only_store_file_is_exit_3_naming_its_permissions(
    folder: Path, args: tuple[str, ...]
) -> None:
    # given: a migrated store whose file is read-only (444): nothing is left to apply
    url = migrated_store(folder, 0o444)

    # when: a command that writes opens it
    result = cli(*args, "--store", url, cwd=folder)

    # then: one line saying the file is read-only, not a WAL that could not be copied
    assert result.returncode == 3, (result.stdout, result.stderr)
    (line,) = error_lines(result)
    assert line == (
        f"error: store {url} (--store): store.db is read-only for user {user()} (mode 444, "
        f"owner {user()}): fix its permissions or owner (chmod 600 store.db)"
    )
    assert "nothing to apply" not in result.stdout


def test_doctor_reports_a_read_only_store_file_as_a_failed_check(folder: Path) -> None:
    # given: a migrated store whose file is read-only: it answers every read
    url = migrated_store(folder, 0o444)

    # when: doctor checks it
    result = cli("doctor", "--store", url, "--json", cwd=folder)

    # then: a failed check names the file and the fix (a worker on it could not save)
    checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    file = checks["store file"]
    assert (file["status"], file["unreachable"]) == ("error", False)
    assert file["detail"] == (
        f"store.db is read-only for user {user()} (mode 444, owner {user()}): fix its "
        "permissions or owner (chmod 600 store.db)"
    )


def test_a_read_only_store_file_is_still_read(folder: Path) -> None:
    # Reading needs no write: `failures list` goes on (on a backup's copy, say).
    url = migrated_store(folder, 0o444)
    listed = cli("failures", "list", "--store", url, cwd=folder)
    assert listed.returncode == 0, listed.stderr
    assert "no failures match" in listed.stderr
