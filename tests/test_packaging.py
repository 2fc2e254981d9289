"""The package as users install it: a wheel, not this checkout's editable install.

The wheel is built once with pip, as ``pip install`` builds it (hatchling from the index). It
must hold every file the package reads beside its modules at run time (the console's templates
and static files, ``py.typed``) and the license. Then the lowest version of each dependency
that ``pyproject.toml`` allows is installed with it in a fresh virtual environment, and the
commands a newcomer runs first must work there: a floor below what the code uses (an import, a
keyword, a behaviour of a newer release) breaks only the users whose resolver picks it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "lambda_destinations"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# The extras the README's first commands need (dev) and the container installs.
EXTRAS = ("local", "postgres", "uvloop")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", folder, REPO],
        check=True,
        timeout=300,
    )
    (built,) = folder.glob("lambda_destinations-*.whl")
    return built


def package_files() -> set[str]:
    """Every file of the source package as the wheel names it, bytecode aside."""
    return {
        f"lambda_destinations/{path.relative_to(PACKAGE).as_posix()}"
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.mark.slow
def test_the_wheel_holds_every_file_the_package_reads_and_the_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = package_files()
    # What the console serves and the type checkers read: none of it is a module.
    assert {
        "lambda_destinations/console/templates/base.html",
        "lambda_destinations/console/static/console.css",
        "lambda_destinations/py.typed",
    } <= expected
    assert expected - names == set()
    dist_info = f"lambda_destinations-{PROJECT['version']}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert f"Requires-Python: {PROJECT['requires-python']}" in metadata.splitlines()


def floors() -> list[str]:
    """``name==X`` for each ``name>=X`` the runtime dependencies and EXTRAS declare."""
    requirements = list(PROJECT["dependencies"])
    for extra in EXTRAS:
        requirements += PROJECT["optional-dependencies"][extra]
    pins = []
    for requirement in requirements:
        found = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9][0-9.]*)", requirement)
        assert found, f"{requirement!r} declares no lower bound"
        pins.append(f"{found[1]}=={found[2]}")
    return pins


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_lowest_dependency_versions_allowed_run_the_first_commands(
    wheel: Path, tmp_path: Path
) -> None:
    environment = tmp_path / "venv"
    # No pip of its own (ensurepip takes seconds): this process's pip installs into it.
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    constraints = tmp_path / "floors.txt"
    constraints.write_text("\n".join(floors()) + "\n", encoding="utf-8")
    # Wheels only: a floor without one for this Python would be compiled, not tested. No
    # bytecode at install (most of the install's time, for modules nothing here imports): the
    # first import of each module below writes it, as pip would have, warnings aside.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
         "--disable-pip-version-check", "--no-compile", "--only-binary", ":all:",
         "--constraint", constraints, f"{wheel}[{','.join(EXTRAS)}]"],
        check=True,
        timeout=600,
    )  # fmt: skip
    command = environment / "bin" / "lambda-destinations"
    folder = tmp_path / "empty"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LAMBDA_DEST"))}

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    version = run(command, "--version")
    assert (version.returncode, version.stderr) == (0, "")
    assert version.stdout == f"lambda-destinations, version {PROJECT['version']}\n"
    # Every module imports (the wheel's copy, not this checkout's), warnings as errors.
    every_module = (
        "import importlib, pkgutil, lambda_destinations as p\n"
        "assert 'site-packages' in p.__file__, p.__file__\n"
        "for m in pkgutil.walk_packages(p.__path__, 'lambda_destinations.'):\n"
        "    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
    )
    # Their bytecode first, warnings aside, as pip's install writes it (a dependency's invalid
    # escape is a warning of compiling, which users, whose pip compiled it, never see).
    compiled = run(python, "-W", "ignore", "-c", every_module)
    assert compiled.returncode == 0, compiled.stderr
    imported = run(python, "-W", "error", "-c", every_module)
    assert (imported.returncode, imported.stderr) == (0, "")
    # A record's fields keep AWS's spelling through the model, unknown ones too.
    spelled = run(
        python, "-c",
        "import json, sys\n"
        "from lambda_destinations.schemas import decode\n"
        "body = json.load(open(sys.argv[1]))\n"
        "body['requestContext']['tenantId'] = 't-9'\n"
        "dumped = decode(json.dumps(body)).record.model_dump(mode='json', exclude_none=True)\n"
        "print(json.dumps(dumped['requestContext']))\n",
        REPO / "tests" / "events" / "invocation-success.json",
    )  # fmt: skip
    assert spelled.returncode == 0, spelled.stderr
    assert json.loads(spelled.stdout)["tenantId"] == "t-9"
    dev = run(command, "dev", "--simulate", "5", "--once", "--json")
    assert dev.returncode == 0, dev.stderr
    summary = json.loads(dev.stdout)
    # the five records, and S3's test event for dev's bucket (sent when its notification was set)
    assert (summary["received"], summary["acked"], summary["quarantined"]) == (6, 6, 0)
    listed = run(command, "failures", "list", "--since", "2h", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    # dev's simulated records are the same each time: the first five hold a failure.
    assert rows
    assert all(row["status"] == "open" for row in rows)
