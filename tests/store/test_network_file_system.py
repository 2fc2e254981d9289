"""A SQLite store on a network file system (NFS, EFS, SMB) is refused by the commands that
write it, and doctor fails its check: SQLite's WAL keeps its index in memory-mapped shared
memory, which two hosts do not share ("WAL does not work over a network filesystem").

This machine's kernel has no NFS client, so no export can be mounted: the tests read the real
/proc/self/mountinfo with a stand-in line added, a mount of the test's folder as EFS mounts
(type nfs4), and the commands read that table in place of /proc/self/mountinfo.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lambda_destinations.cli import cli
from lambda_destinations.store import _mounts
from lambda_destinations.store._mounts import NETWORK_TYPES, file_system_type

REAL = Path("/proc/self/mountinfo")


def efs_line(folder: Path) -> str:
    """A mountinfo line as an EFS volume's (nfs4) would be, mounted at ``folder``."""
    point = str(folder).replace(" ", "\\040")
    return (
        f"999 1 0:99 / {point} rw,relatime shared:500 - nfs4 "
        "fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:/ rw,vers=4.1,hard,proto=tcp"
    )


@pytest.fixture
def on_efs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the mount table the commands read says is an EFS volume."""
    folder = tmp_path / "efs"
    folder.mkdir()
    table = tmp_path / "mountinfo"
    table.write_text(REAL.read_text() + efs_line(folder) + "\n")
    monkeypatch.setattr(_mounts, "MOUNTINFO", table)
    return folder


@pytest.mark.skipif(not REAL.exists(), reason="reads Linux's /proc/self/mountinfo")
def test_the_mount_table_names_the_file_system_of_a_file(tmp_path: Path) -> None:
    real = REAL.read_text()
    file = tmp_path / "a folder" / "results.db"  # not there yet: its folder's mount counts

    # the real table: this machine's local file system for the test's folder, proc for /proc
    assert file_system_type(file, real) not in NETWORK_TYPES | {None}
    assert file_system_type(Path("/proc/self/status"), real) == "proc"
    # with a later mount of the folder (a space in its name escaped as \040), that one
    assert file_system_type(file, real + efs_line(tmp_path / "a folder")) == "nfs4"
    assert file_system_type(tmp_path / "a folderX", real + efs_line(tmp_path / "a folder")) != (
        "nfs4"
    )


@pytest.mark.parametrize("args", [("migrate",), ("run", "--once")])
def test_writing_commands_refuse_a_store_on_a_network_file_system(
    on_efs: Path, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, moto_server, make_queue
) -> None:
    # given: the store's file would be on the EFS volume; a queue for `run` to poll
    monkeypatch.setenv("LAMBDA_DESTINATIONS_OPS_PORT", "0")
    monkeypatch.setenv("LAMBDA_DESTINATIONS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("LAMBDA_DESTINATIONS_REGION", "us-east-1")
    monkeypatch.setenv("LAMBDA_DESTINATIONS_QUEUES", make_queue("efs")[0])
    url = f"sqlite:///{on_efs / 'results.db'}"

    # when: a command that writes the store opens it
    result = CliRunner().invoke(cli, [*args, "--store", url])

    # then: exit 3, one line naming the file, its file system and the fix; no file made
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: store {url} (--store): {on_efs / 'results.db'} is on a network file system "
        "(nfs4), where SQLite's write-ahead log and locks do not hold (two hosts at once "
        "corrupt it): put the file on a local volume, or use PostgreSQL (postgresql://…) for "
        "a store that outlives the host or is shared"
    ]
    assert list(on_efs.iterdir()) == []


def test_doctor_fails_its_store_file_check_on_a_network_file_system(on_efs: Path) -> None:
    url = f"sqlite:///{on_efs / 'results.db'}"

    result = CliRunner().invoke(cli, ["doctor", "--store", url, "--json"])

    checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    file = checks["store file"]
    assert (file["status"], file["unreachable"]) == ("error", False)
    assert file["detail"].startswith(f"{on_efs / 'results.db'} is on a network file system")
    assert file["fix"].startswith("put the file on a local volume, or use PostgreSQL")
    assert result.exit_code != 0  # 4 here: no AWS endpoint answers this test
