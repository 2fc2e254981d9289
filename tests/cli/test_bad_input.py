"""Bad input ends in one line naming the setting or argument and the fix, with its exit code."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_input_helpers import cli, one_error_line


@pytest.mark.parametrize(
    "args",
    [
        ("failures", "list"),
        ("failures", "stats"),
        ("doctor",),
    ],
)
def test_read_only_commands_never_create_the_store_or_its_folder(
    args: tuple[str, ...], tmp_path: Path, endpoint_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    result = cli(*args, "--store", url, "--endpoint-url", endpoint_url, cwd=tmp_path)
    assert result.returncode in (1, 3), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_migrate_creates_the_folder_and_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    result = cli("migrate", "--store", f"sqlite:///{path}", "--log-format", "console")
    assert result.returncode == 0, result.stderr
    assert path.is_file()
    said = [line for line in result.stderr.splitlines() if "created the store's directory" in line]
    assert len(said) == 1
    assert str(path.parent) in said[0]


def test_a_postgresql_store_without_the_extra_names_the_pip_command(tmp_path: Path) -> None:
    # The extra is installed here: hide asyncpg from this process as if it were not.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['asyncpg'] = None\n")
    result = cli(
        "failures",
        "list",
        "--store",
        "postgresql://app@127.0.0.1/db",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 3
    assert "pip install 'lambda-destinations[postgres]'" in one_error_line(result)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://app:pw@127.0.0.1/db?timeout=abc", "unknown parameter 'timeout'"),
        ("postgresql://app:pw@127.0.0.1/db?sslmode=sometimes", "sslmode must be"),
        ("sqlite:///x.db?timeout=abc", "takes no parameters"),
        ("sqlite:///file:x.db", "not a plain path"),
    ],
)
def test_store_url_parameters_get_one_line(url: str, problem: str, tmp_path: Path) -> None:
    result = cli("migrate", "--store", url, cwd=tmp_path)
    assert result.returncode == 3
    line = one_error_line(result)
    assert problem in line
    assert "LAMBDA_DESTINATIONS_STORE" in line
    assert ":pw@" not in line
