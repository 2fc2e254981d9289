"""A SQLite store file this user may not read or write is configuration (exit 3), said as the
file's permissions, not as a store that cannot be reached (exit 4) or a disk that is full; so
is a file that is not a SQLite database.

Root ignores permissions through two capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
run as root, as CI runs, the commands run as root without them (setpriv), and then obey the
file's mode as any other user does.
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
# The capabilities that let root read and write whatever a file's mode says.
OVERRIDES = "-dac_override,-dac_read_search"


def user() -> str:
    """The name of the user the commands run as (this process's)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def _prefix() -> list[str]:
    """What runs a command so that file permissions stop it: nothing unless this is root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:  # util-linux's: on every Debian
        pytest.fail("needs setpriv (util-linux) to run the commands as root without overrides")
    return [setpriv, f"--bounding-set={OVERRIDES}", f"--inh-caps={OVERRIDES}"]


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder of this user's, to run the commands in."""
    made = Path(tempfile.mkdtemp(prefix="store-permissions-"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lambda-destinations ARGS`` as this user, permissions obeyed, in ``cwd``."""
    env = {**os.environ, "LAMBDA_DESTINATIONS_OPS_PORT": "0"}
    env["LAMBDA_DESTINATIONS_LOG_FORMAT"] = "auto"
    return subprocess.run(
        [*_prefix(), sys.executable, *MAIN, *args],
        cwd=cwd,
        env=env,
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


def test_a_store_folder_of_another_uid_is_exit_3_naming_its_mode_owner_and_the_chown(
    folder: Path,
) -> None:
    """A container's volume owned by another uid (root's, as a bind mount makes it): the line
    names the folder's mode and owner, and the chown by uid, which the volume's host knows."""
    # given: the store's folder belongs to another uid, mode 755
    volume = folder / "volume"
    volume.mkdir(mode=0o755)
    os.chown(volume, 54321, 54321)
    expected = (
        f"the folder {volume} (mode 755, owner 54321) is not writable for user {user()}, and "
        f"SQLite creates the file there: fix its permissions or owner "
        f"(chown {os.geteuid()} {volume})"
    )

    # when: migrate creates the store there, and doctor checks it
    made = cli("migrate", "--store", "sqlite:///volume/results.db", cwd=folder)
    doctor = cli("doctor", "--store", "sqlite:///volume/results.db", "--json", cwd=folder)

    # then: one line naming the folder's permissions and the fix, exit 3; doctor's row the same
    assert made.returncode == 3, made.stderr
    assert error_lines(made) == [
        "error: store URL 'sqlite:///volume/results.db' (--store): cannot create "
        f"volume/results.db: {expected}"
    ]
    checks = {check["check"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["store"]["detail"] == (
        "sqlite:///volume/results.db: the file does not exist, and the worker cannot create "
        f"it: {expected}"
    )


@pytest.mark.parametrize("args", [("failures", "list"), ("dev", "--once")])
def test_a_store_file_that_is_not_a_sqlite_database_is_exit_3_not_a_wait(
    folder: Path, args: tuple[str, ...]
) -> None:
    # given: dev's store file is text, not a SQLite database (a file from elsewhere, say)
    (folder / ".lambda-destinations").mkdir(mode=0o700)
    (folder / ".lambda-destinations" / "dev.db").write_text("not a database\n" * 100)
    url = "sqlite:///.lambda-destinations/dev.db"

    # when: a command opens it (dev waited for it for ever, as for a store that is down)
    result = cli(*args, "--store", url, cwd=folder)

    # then: one line naming the file and the fix, exit 3 (configuration), not 4
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert error_lines(result) == [
        f"error: store {url} (--store): file is not a database: the file is "
        "not a SQLite database: point the store at another path"
    ]
