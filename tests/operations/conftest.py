"""Fixtures of the operator-command tests: the CLI's environment, a seeded store, and a moto
server of their own for Lambda.

Lambda gets a separate moto *process*: in-process servers share moto's backends, and once any
Lambda function exists ``/moto-api/data.json`` answers 500, which other tests read.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from ops_helpers import REGION

from processes import reap

_SERVER = """
import logging, sys, time
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
while True:
    time.sleep(3600)
"""


# The region of a request's SigV4 signature (Credential=KEY/DATE/REGION/SERVICE/aws4_request).
_SIGNED_REGION = re.compile(r"Credential=[^/]+/[0-9]+/([a-z0-9-]+)/")


class LambdaEndpoint:
    """A moto server in its own process with Lambda enabled (no Docker) and an IAM role."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._call("POST", "/moto-api/config", {"lambda": {"use_docker": False}})
        kwargs = {"region_name": REGION, "endpoint_url": url}
        self.iam = boto3.client("iam", **kwargs)
        self.lam = boto3.client("lambda", **kwargs)
        self.sqs = boto3.client("sqs", **kwargs)
        self.sns = boto3.client("sns", **kwargs)
        self.role_arn = self.iam.create_role(
            RoleName=f"ld-test-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        self.functions: list[str] = []

    def _call(self, method: str, path: str, body: Any = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local URL
            return bytes(response.read())

    def create_function(self, name: str, region: str = REGION) -> str:
        """A function (any code: it never runs) in ``region``; its ARN."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return event\n")
        arn: str = self._lambda_in(region).create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=self.role_arn,
            Handler="app.handler",
            Code={"ZipFile": buffer.getvalue()},
        )["FunctionArn"]
        self.functions.append(arn)
        return arn

    def _lambda_in(self, region: str) -> Any:
        if region == REGION:
            return self.lam
        return boto3.client("lambda", region_name=region, endpoint_url=self.url)

    def start_recording(self) -> None:
        self._call("POST", "/moto-api/recorder/reset-recording")
        self._call("POST", "/moto-api/recorder/start-recording")

    def invocations(self) -> list[tuple[str, Any]]:
        """(function name or ARN, payload) of every Invoke since start_recording, in order."""
        return [(name, payload) for _region, name, payload in self.invocations_by_region()]

    def invocations_by_region(self) -> list[tuple[str, str, Any]]:
        """(region, function name or ARN, payload) of every Invoke since start_recording, in
        order. The region is the one the request was signed for: moto, as Lambda, serves a
        request from that region's functions, whatever region an ARN in it names."""
        self._call("POST", "/moto-api/recorder/stop-recording")
        text = self._call("GET", "/moto-api/recorder/download-recording").decode()
        found = []
        for line in text.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            url = entry.get("url", "").split("?", 1)[0]  # an Invoke with ?Qualifier= too
            if "/functions/" not in url or not url.endswith("/invocations"):
                continue
            body = entry.get("body") or ""
            raw = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            name = urllib.request.unquote(url.split("/functions/", 1)[1].rsplit("/", 1)[0])
            signed = _SIGNED_REGION.search(entry.get("headers", {}).get("Authorization", ""))
            found.append((signed[1] if signed else "", name, json.loads(raw)))
        return found

    def cleanup(self) -> None:
        for arn in self.functions:
            with contextlib.suppress(Exception):  # a test may have deleted it
                self._lambda_in(arn.split(":")[3]).delete_function(FunctionName=arn)
        self.functions.clear()


@pytest.fixture(scope="session")
def lambda_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto server process for Lambda tests (shared by the session)."""
    # moto's recorder writes its file into the working directory: keep it out of the checkout.
    workdir = tmp_path_factory.mktemp("lambda-moto")
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=workdir,
        env={**os.environ, "MOTO_RECORDER_FILEPATH": str(workdir / "moto_recording")},
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        if not port:
            pytest.fail("the Lambda moto server did not start")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        reap(process)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def lambda_endpoint(lambda_server: str) -> Iterator[LambdaEndpoint]:
    endpoint = LambdaEndpoint(lambda_server)
    try:
        yield endpoint
    finally:
        endpoint.cleanup()


@pytest.fixture
def cli_env(endpoint_url: str, sqlite_url: str) -> dict[str, str]:
    """The environment of a CLI run against the shared moto server and the test's SQLite."""
    return {
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": REGION,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
    }


@pytest.fixture
def profile_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables of an operator whose region is set in an AWS profile alone (as `aws
    configure --profile` writes it): AWS_CONFIG_FILE and AWS_PROFILE, none of the region's."""
    config = tmp_path / "aws-config"
    config.write_text(f"[profile ops]\nregion = {REGION}\n", encoding="utf-8")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    return {"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "ops"}


@pytest.fixture
def lambda_env(lambda_endpoint: LambdaEndpoint, sqlite_url: str) -> dict[str, str]:
    """The environment of a CLI run against the Lambda moto server."""
    return {
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": lambda_endpoint.url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": REGION,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
    }
