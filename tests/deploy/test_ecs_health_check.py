"""The ECS task definitions' health check (CloudFormation and Terraform), run as ECS runs it:
the command of the container's healthCheck, with the task's environment, against the worker's
ops server. ECS replaces a task whose check fails three times, and the deployment's circuit
breaker rolls back a service whose new tasks never pass it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import load_template, load_terraform

from lambda_destinations.cli.healthcheck import healthcheck_command
from lambda_destinations.config import ENV_PREFIX
from lambda_destinations.worker import OpsServer
from processes import free_port

PORT = "8080"  # the templates' ops port, in their command and environment


def _cloudformation() -> tuple[list[str], dict[str, str], int]:
    """The health check's command, the container's environment and ECS's timeout."""
    properties = load_template()["Resources"]["TaskDefinition"]["Properties"]
    (container,) = properties["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    check = container["HealthCheck"]
    return check["Command"], environment, check["Timeout"]


def _terraform() -> tuple[list[str], dict[str, str], int]:
    module = load_terraform()
    (definition,) = module["resource"]["aws_ecs_task_definition"].values()
    found = re.search(
        r"healthCheck = \{command = (\[[^\]]*\]),.*?timeout = (\d+)",
        definition["container_definitions"],
    )
    assert found is not None, "no healthCheck command in the task definition"
    command = json.loads(found.group(1).replace("${local.ops_port}", PORT))
    environment = dict(module["locals"]["environment"])
    environment[f"{ENV_PREFIX}OPS_PORT"] = str(module["locals"]["ops_port"])
    return command, environment, int(found.group(2))


TEMPLATES = {"cloudformation": _cloudformation, "terraform": _terraform}


def _check(template: str, port: int, tmp_path: Path, **variables: str) -> int:
    """The exit code of the template's health check, run as ECS runs it in the image: its
    environment (literal values; ``variables`` added), the image's PATH (the virtual
    environment's bin first), the worker on ``port`` rather than 8080."""
    command, environment, _ = TEMPLATES[template]()
    assert command[0] == "CMD", command  # run as it is, no shell
    assert environment[f"{ENV_PREFIX}OPS_PORT"] == PORT
    task = {k: v for k, v in environment.items() if isinstance(v, str) and "${" not in v}
    task[f"{ENV_PREFIX}OPS_PORT"] = str(port)
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        **task,
        **variables,
    }
    args = [arg.replace(f":{PORT}/", f":{port}/") for arg in command[1:]]
    result = subprocess.run(
        args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode


async def _serving(host: str, problems: list[str]) -> OpsServer:
    ops = OpsServer(
        host=host,
        port=0,
        health=lambda: problems,
        readiness=list,
        metrics=lambda _accept: (b"", "text/plain"),
    )
    await ops.start()
    return ops


@pytest.mark.parametrize("template", TEMPLATES)
async def test_the_health_check_asks_the_worker_not_the_proxy_the_task_sets(
    template: str, tmp_path: Path
) -> None:
    # given: a healthy worker, and a task whose environment names an HTTP proxy (private
    # subnets without a NAT gateway reach AWS through one), which cannot reach the task's own
    # loopback: here a port nothing listens on
    proxy = f"http://127.0.0.1:{free_port()}"
    problems: list[str] = []
    ops = await _serving("127.0.0.1", problems)
    try:
        port = ops.addresses[0][1]
        check = (template, port, tmp_path)
        # when: ECS runs the check
        healthy = await asyncio.to_thread(_check, *check, HTTP_PROXY=proxy, http_proxy=proxy)
        # and once the worker says it is not alive
        problems.append("the poller of orders has been stuck in a receive for 61 s")
        failing = await asyncio.to_thread(_check, *check, HTTP_PROXY=proxy, http_proxy=proxy)
    finally:
        await ops.close()
    # then: the worker's answer is what counts; before, the question went to the proxy, and a
    # healthy task was failed and replaced again and again
    assert healthy == 0
    assert failing != 0


@pytest.mark.parametrize("template", TEMPLATES)
async def test_the_health_check_asks_an_ops_server_listening_on_ipv6(
    template: str, tmp_path: Path
) -> None:
    # given: the worker's ops server on IPv6 (LAMBDA_DESTINATIONS_OPS_HOST=::, an IPv6-only
    # subnet), which does not answer on 127.0.0.1
    ops: Any = await _serving("::1", [])
    try:
        port = ops.addresses[0][1]
        # when: ECS runs the check in the task that sets it
        code = await asyncio.to_thread(
            _check, template, port, tmp_path, **{f"{ENV_PREFIX}OPS_HOST": "::"}
        )
    finally:
        await ops.close()
    # then: it asks ::1, where the worker listens
    assert code == 0


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_health_check_gives_up_before_ecs_does(template: str) -> None:
    # ECS counts a check still running at its timeout as failed, and it cannot say why: the
    # check's own timeout comes first, and its one line names what did not answer
    command, _, ecs_timeout = TEMPLATES[template]()
    own = next(p.default for p in healthcheck_command.params if p.name == "seconds")
    assert command[1:3] == ["lambda-destinations", "healthcheck"]
    assert "--timeout" not in command
    assert own + 1 <= ecs_timeout
