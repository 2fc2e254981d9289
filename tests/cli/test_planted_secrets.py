"""Planted secrets never reach any output: a store password, an SMTP password and an AWS secret
key, through `run`, `dev`, `doctor`, `config`, `failures`, `replay` and `dlq` at debug level,
with JSON and console logs, on the paths that work and the paths that fail; and every kind of
secret a setting, a handler table or a variable holds through `config`."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bad_input_helpers import cli

from lambda_destinations.simulate import messages
from processes import free_port

STORE_SECRET = "StorePw-9f3c1e7a"
SMTP_SECRET = "SmtpPw-4b8d2a6c"
AWS_SECRET = "AwsSecret-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
SECRETS = (STORE_SECRET, SMTP_SECRET, AWS_SECRET)


@pytest.fixture
def planted(
    postgres_url: str, endpoint_url: str, sqs: Any, make_queue: Any, tmp_path: Path
) -> dict[str, Any]:
    """Settings with the three secrets in them, and a queue with failures to work on."""
    store = postgres_url.replace("://postgres@", f"://postgres:{STORE_SECRET}@", 1)
    assert STORE_SECRET in store  # the server trusts local connections: any password works
    url, dlq = make_queue("secrets")
    for message in list(messages(12, seed=3, poison_every=6)):
        sqs.send_message(QueueUrl=url, MessageBody=message.body)
    config = tmp_path / "settings.toml"
    config.write_text(
        f"""
[[routes]]
condition = "failure"
handlers = ["persist", "mail"]

[[routes]]
handlers = ["persist"]

[handlers.mail]
type = "email"
transport = "smtp"
host = "127.0.0.1"
port = {free_port()}
security = "none"
username = "alerts"
password = "{SMTP_SECRET}"
from = "alerts@example.com"
to = ["oncall@example.com"]
""",
        encoding="utf-8",
    )
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEY000000",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": store,
        "LAMBDA_DESTINATIONS_CONFIG": str(config),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_LOG_LEVEL": "debug",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_HANDLER_ATTEMPTS": "1",
    }
    return {"env": env, "queue": url, "dlq": dlq, "store": store, "cwd": tmp_path}


def leaks(result: subprocess.CompletedProcess[str]) -> list[str]:
    output = result.stdout + result.stderr
    return [secret for secret in SECRETS if secret in output]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_planted_secret_in_any_output(planted: dict[str, Any], log_format: str) -> None:
    env = {**planted["env"], "LAMBDA_DESTINATIONS_LOG_FORMAT": log_format}
    cwd = planted["cwd"]
    unreachable_store = planted["store"].rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/db"
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    # the worker: saves, a failing SMTP handler (its login is in the settings), quarantines
    runs["run"] = cli("run", "--once", "--json", env=env, cwd=cwd, timeout=180)
    assert runs["run"].returncode == 0, runs["run"].stderr[-2000:]
    assert "worker started" in runs["run"].stderr
    assert "postgres:***@" in runs["run"].stderr  # the store's URL is in its start line, masked
    assert "SMTP server 127.0.0.1" in runs["run"].stderr  # the handler ran, and failed
    assert json.loads(runs["run"].stdout.splitlines()[-1])["received"] >= 12

    listed = cli("failures", "list", "--json", env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr[-2000:]
    runs["failures list"] = listed
    request_id = json.loads(listed.stdout)[0]["request_id"]
    runs["failures show"] = cli("failures", "show", request_id, "--json", env=env, cwd=cwd)
    runs["failures stats"] = cli("failures", "stats", "--json", env=env, cwd=cwd)
    runs["replay"] = cli("replay", "--dry-run", "--json", env=env, cwd=cwd)
    runs["dlq peek"] = cli("dlq", "peek", planted["dlq"], "--json", env=env, cwd=cwd)
    runs["doctor"] = cli("doctor", env=env, cwd=cwd)
    runs["doctor --json"] = cli("doctor", "--json", env=env, cwd=cwd)
    runs["migrate --check"] = cli("migrate", "--check", env=env, cwd=cwd)
    runs["config"] = cli("config", env=env, cwd=cwd)
    runs["config --check --json"] = cli("config", "--check", "--json", env=env, cwd=cwd)
    assert runs["config --check --json"].returncode == 0, runs["config --check --json"].stderr
    # the store cannot be reached: its URL is in the error line
    gone = {**env, "LAMBDA_DESTINATIONS_STORE": unreachable_store}
    runs["failures list (store down)"] = cli("failures", "list", env=gone, cwd=cwd)
    assert runs["failures list (store down)"].returncode == 4
    runs["doctor (store down)"] = cli("doctor", env=gone, cwd=cwd)
    # dev: its own endpoint and queues, the planted store and settings
    runs["dev"] = cli("dev", "--once", "--simulate", "6", env=env, cwd=cwd, timeout=240)
    assert runs["dev"].returncode == 0, runs["dev"].stderr[-2000:]
    # dev's settings file names the store (password included), for the commands after it:
    # owner-only, as is its folder
    folder = cwd / ".lambda-destinations"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "dev.toml").stat().st_mode) == 0o600

    for name, result in runs.items():
        assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
    assert {name: leaks(result) for name, result in runs.items() if leaks(result)} == {}
    # the URLs were printed, masked
    assert "postgres:***@" in runs["failures list (store down)"].stderr


ENDPOINT_PASSWORD = "EndpointPw-7c2e9a41"
ENDPOINT_TOKEN = "EndpointToken-3f8b1d65"


@pytest.mark.parametrize("userinfo", ["", f"u:{ENDPOINT_PASSWORD}@"])
def test_the_endpoint_urls_password_and_query_never_show(
    endpoint_url: str, userinfo: str, tmp_path: Path
) -> None:
    # given an endpoint URL with a token in its query (moto answers it), or a password too
    # (refused: requests are signed with the AWS credentials, and the error quotes the URL)
    endpoint = endpoint_url.replace("://", f"://{userinfo}", 1) + f"/?token={ENDPOINT_TOKEN}"
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEY000000",
        "AWS_SECRET_ACCESS_KEY": "any",
        "AWS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path}/r.db",
        "LAMBDA_DESTINATIONS_QUEUES": "planted-endpoint",
        "LAMBDA_DESTINATIONS_LOG_LEVEL": "debug",
        "LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "10",  # time for botocore's tries and one logged retry
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
    }
    # when doctor checks it and the worker tries it
    runs = {
        "doctor": cli("doctor", env=env, cwd=tmp_path),
        "doctor --json": cli("doctor", "--json", env=env, cwd=tmp_path),
    }
    # the worker retries an endpoint that does not answer, naming it
    gone = f"http://{userinfo}127.0.0.1:{free_port()}/?token={ENDPOINT_TOKEN}"
    runs["run"] = cli("run", "--once", env={**env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": gone})
    # then the endpoint is named, its token and password masked
    for name, result in runs.items():
        output = result.stdout + result.stderr
        assert "Traceback" not in output, (name, output[-2000:])
        assert ENDPOINT_TOKEN not in output, (name, output[-2000:])
        assert ENDPOINT_PASSWORD not in output, (name, output[-2000:])
    if userinfo:
        # a password in an endpoint URL is refused at start, in one line naming the setting
        for name, result in runs.items():
            assert result.returncode == 3, (name, result.stderr[-2000:])
            assert "LAMBDA_DESTINATIONS_ENDPOINT_URL" in result.stderr, (name, result.stderr)
            assert "no user:password@ in an endpoint URL" in result.stderr, (name, result.stderr)
        return
    assert "?token=***" in runs["doctor"].stdout
    assert "?token=***" in runs["run"].stderr, runs["run"].stderr


# A secret of each kind `config` could show: its value in the settings or the environment.
CONFIG_SECRETS = {
    "store password": "StorePw-5e1d7c3b",
    "endpoint token": "EndpointTok-8a2f4d6e",
    "webhook URL path": "WebhookPath-0c9b8a7d",
    "webhook URL query": "WebhookQuery-6f5e4d3c",
    "webhook header": "HeaderTok-2b3c4d5e",
    "Teams signature": "TeamsSig-5a4b3c2d",
    "Discord webhook token": "DiscordTok-1e2d3c4b",
    "user handler secret": "HandlerSecret-9d8c7b6a",
    "SMTP password": SMTP_SECRET,
    "*_env variable's value": "EnvValue-1f2e3d4c",
    "console token": "ConsoleTok-7a6b5c4d",
    "console URL token": "ConsoleUrlTok-3e4f5a6b",
    "proxy password": "ProxyPw-4c5d6e7f",
    "external id": "ExternalId-8b9c0d1e",
    "AWS secret key": AWS_SECRET,
}


@pytest.fixture
def config_planted(tmp_path: Path) -> dict[str, str]:
    """Settings, handler tables and variables holding every kind of secret `config` sees."""
    s = CONFIG_SECRETS
    (tmp_path / "settings.toml").write_text(
        f"""
store = "postgresql://app:{s["store password"]}@db.internal/results"

[handlers.hook]
type = "webhook"
url = "https://hooks.example.com/services/{s["webhook URL path"]}?sig={s["webhook URL query"]}"
headers = {{ Authorization = "Bearer {s["webhook header"]}" }}
secret_env = "HOOK_SECRET"

[handlers.teams]
type = "webhook"
preset = "teams"
url = "https://prod-12.westus.logic.azure.com:443/workflows/0a1b?sig={s["Teams signature"]}"

[handlers.discord]
type = "webhook"
preset = "discord"
url = "https://discord.com/api/webhooks/1234567890/{s["Discord webhook token"]}"

[handlers.mine]
type = "myapp.hooks:notify"
secret = "{s["user handler secret"]}"

[handlers.mail]
type = "email"
transport = "smtp"
host = "smtp.example.com"
username = "alerts"
password = "{s["SMTP password"]}"
from = "alerts@example.com"
to = ["oncall@example.com"]

[accounts.111122223333]
role_arn = "arn:aws:iam::111122223333:role/invoke"
external_id = "{s["external id"]}"
""",
        encoding="utf-8",
    )
    return {
        "LAMBDA_DESTINATIONS_CONFIG": str(tmp_path / "settings.toml"),
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": f"http://127.0.0.1:4566/?token={s['endpoint token']}",
        "HOOK_SECRET": s["*_env variable's value"],
        "LAMBDA_DESTINATIONS_CONSOLE_TOKEN": s["console token"],
        "LAMBDA_DESTINATIONS_CONSOLE_PUBLIC_URL": (
            f"https://console.example.com/?t={s['console URL token']}"
        ),
        "HTTPS_PROXY": f"http://proxyuser:{s['proxy password']}@proxy.internal:3128",
        "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEY000000",
        "AWS_SECRET_ACCESS_KEY": s["AWS secret key"],
    }


@pytest.mark.parametrize("args", [(), ("--json",)], ids=["table", "json"])
def test_config_shows_no_planted_secret(
    config_planted: dict[str, str], tmp_path: Path, args: tuple[str, ...]
) -> None:
    # when: the settings are shown, at debug level (every log line too)
    env = {**config_planted, "LAMBDA_DESTINATIONS_LOG_LEVEL": "debug"}
    result = cli("config", *args, env=env, cwd=tmp_path, unset=("https_proxy",))

    # then: no secret of any kind in the output
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert {kind: value for kind, value in CONFIG_SECRETS.items() if value in output} == {}
    # and what holds them is shown, masked: each row is there
    for shown in (
        "postgresql://app:***@db.internal/results",
        "http://127.0.0.1:4566/?token=***",
        "https://hooks.example.com/***",
        "https://prod-12.westus.logic.azure.com:443/***",
        "https://discord.com/***",
        "https://console.example.com/?t=***",
        "http://proxy.internal:3128",
    ):
        assert shown in output, (shown, output)
    assert "HOOK_SECRET" in output  # the variable's name, and that it is set
    if args:
        settings = json.loads(result.stdout)["settings"]
        hook = settings["handlers"]["value"]["hook"]["settings"]
        assert hook["secret_env"]["value"] == {
            "variable": "HOOK_SECRET",
            "set": True,
            "from": "HOOK_SECRET",
        }
        assert hook["headers"]["value"] == {"Authorization": "***"}
        assert settings["handlers"]["value"]["mail"]["settings"]["password"]["value"] == "***"
        assert settings["handlers"]["value"]["mine"]["settings"]["secret"]["value"] == "***"
        assert json.loads(result.stdout)["environment"]["console_token"]["value"] == "set"
