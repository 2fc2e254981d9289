"""`config`: every setting in effect with where it came from (a default, the TOML file, a
variable, an option), as a table that fits the terminal and as JSON; a bad setting is the line
and the exit code `run` gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import cli, cli_in_a_terminal

from lambda_destinations.config import Settings


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(
        """
queues = ["from-the-file"]
store = "sqlite:///from-the-file.db"
concurrency = 12

[[routes]]
condition = "failure"
function = "orders-*"
handlers = ["persist", "hook"]

[handlers.hook]
type = "webhook"
url = "https://hooks.example.com/x"
timeout = "5s"
""",
        encoding="utf-8",
    )
    return path


def shown(*args: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    result = cli("config", "--json", *args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_each_setting_names_where_it_came_from(toml: Path, tmp_path: Path) -> None:
    # given: the file sets queues, store and concurrency; the environment sets queues again
    # (it wins) and the region; --store wins over the file
    env = {
        "LAMBDA_DESTINATIONS_CONFIG": str(toml),
        "LAMBDA_DESTINATIONS_QUEUES": "from-the-env,another",
        "LAMBDA_DESTINATIONS_REGION": "eu-west-1",
        "ECS_AGENT_URI": "http://169.254.170.2/api/task?sig=abc",  # set by ECS, no prefix
    }

    # when
    settings = shown("--store", "sqlite:///from-the-flag.db", env=env, cwd=tmp_path)["settings"]

    # then
    def where(name: str) -> tuple[Any, str, str | None]:
        return settings[name]["value"], settings[name]["source"], settings[name]["from"]

    assert where("queues") == (
        ["from-the-env", "another"],
        "env",
        "LAMBDA_DESTINATIONS_QUEUES",
    )
    assert where("store") == ("sqlite:///from-the-flag.db", "flag", "--store")
    assert where("concurrency") == (12, "file", str(toml))
    assert where("region") == ("eu-west-1", "env", "LAMBDA_DESTINATIONS_REGION")
    assert where("wait_time") == (20, "default", None)
    assert where("config") == (str(toml), "env", "LAMBDA_DESTINATIONS_CONFIG")
    assert where("routes")[1:] == ("file", str(toml))
    assert where("ecs_agent_uri") == (
        "http://169.254.170.2/api/task?sig=***",
        "env",
        "ECS_AGENT_URI",
    )


def test_the_config_flag_and_the_standard_region_are_named(toml: Path, tmp_path: Path) -> None:
    env = {"AWS_REGION": "ap-south-1", "LAMBDA_DESTINATIONS_REGION": ""}

    settings = shown("--config", str(toml), env=env, cwd=tmp_path)["settings"]

    assert settings["config"] == {"value": str(toml), "source": "flag", "from": "--config"}
    # the region the AWS clients take when the setting is unset, and the variable it is from
    assert settings["region"] == {"value": "ap-south-1", "source": "env", "from": "AWS_REGION"}


def test_a_region_of_the_aws_profile_alone_is_named_with_the_profile(
    toml: Path, tmp_path: Path, profile_region: dict[str, str]
) -> None:
    env = {**profile_region, "LAMBDA_DESTINATIONS_REGION": ""}

    settings = shown("--config", str(toml), env=env, cwd=tmp_path)["settings"]
    table = cli("config", "--config", str(toml), env=env, cwd=tmp_path)

    # the region botocore's clients take, from the profile (before: "none: set AWS_REGION")
    assert settings["region"] == {"value": "us-east-1", "source": "profile", "from": "ops"}
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("region ")]
    assert row.split(None, 2)[1:] == ["us-east-1", "the AWS profile ops"]


def test_an_aws_config_file_that_is_no_ini_is_a_line_and_exit_3(
    toml: Path, tmp_path: Path, profile_region: dict[str, str]
) -> None:
    # given: the region left to the AWS profile, in a config file botocore cannot parse
    aws_config = Path(profile_region["AWS_CONFIG_FILE"])
    aws_config.write_text("region = us-east-1\n", encoding="utf-8")  # no [profile] header
    env = {**profile_region, "LAMBDA_DESTINATIONS_REGION": ""}

    result = cli("config", "--config", str(toml), env=env, cwd=tmp_path)

    # then: configuration that cannot work, the file and the fix (before: exit 1, "Unable to
    # parse config file: PATH", no fix)
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr.strip() == (
        f"error: the AWS config file {aws_config} is not an INI file of profiles: correct it "
        "(as `aws configure` writes it), or set AWS_CONFIG_FILE to one that is, or set AWS_REGION"
    )


def test_a_routing_key_written_inline_is_masked(tmp_path: Path) -> None:
    # given: a PagerDuty key written inline, by mistake for routing_key_env
    toml = tmp_path / "pd.toml"
    key = "R0UT1NGKEY0123456789abcdef012345"
    toml.write_text(
        '[handlers.pd]\ntype = "webhook"\npreset = "pagerduty"\n'
        f'routing_key = "{key}"\nrouting_key_env = "PD_KEY"\n',
        encoding="utf-8",
    )

    table = cli("config", "--config", str(toml), cwd=tmp_path)
    options = shown("--config", str(toml), env={}, cwd=tmp_path)["settings"]["handlers"]["value"]

    # then: named, never shown (before: the key whole, in the table and the JSON)
    assert key not in table.stdout + table.stderr
    assert options["pd"]["settings"]["routing_key"]["value"] == "***"


def test_handler_options_are_merged_and_each_names_its_source(toml: Path, tmp_path: Path) -> None:
    # given: the variable's JSON gives the hook's timeout; the file its type and URL
    env = {
        "LAMBDA_DESTINATIONS_CONFIG": str(toml),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"hook": {"timeout": "9s"}}),
    }

    hook = shown(env=env, cwd=tmp_path)["settings"]["handlers"]["value"]["hook"]

    assert hook["type"] == "webhook"
    options = hook["settings"]
    assert options["timeout"] == {
        "value": "9s",
        "source": "env",
        "from": "LAMBDA_DESTINATIONS_HANDLERS",
    }
    assert options["type"]["source"] == "file"
    assert options["url"]["from"] == str(toml)


def test_an_sms_handlers_numbers_are_masked_in_whatever_form_they_were_typed(
    tmp_path: Path,
) -> None:
    # given: numbers written spaced, dashed and in one piece, as the handler takes them
    path = tmp_path / "settings.toml"
    path.write_text(
        """
[handlers.oncall]
type = "sms"
phone_numbers = ["+33 6 12 34 56 78", "+1 (415) 555-2672", "+14155552671"]
origination_number = "+1 800 555 0100"
""",
        encoding="utf-8",
    )
    env = {"LAMBDA_DESTINATIONS_CONFIG": str(path)}

    # when
    result = cli("config", "--json", env=env, cwd=tmp_path)
    table = cli("config", env=env, cwd=tmp_path)

    # then: each masked as logs mask it, in the table too
    assert result.returncode == table.returncode == 0, result.stderr + table.stderr
    options = json.loads(result.stdout)["settings"]["handlers"]["value"]["oncall"]["settings"]
    assert options["phone_numbers"]["value"] == ["+33*****5678", "+14*****2672", "+14*****2671"]
    assert options["origination_number"]["value"] == "+18*****0100"
    for digits in ("12 34 56", "555-2672", "555 0100"):
        assert digits not in result.stdout + table.stdout


def test_json_has_every_setting_and_the_environment(tmp_path: Path) -> None:
    result = shown(env={}, cwd=tmp_path)

    assert set(result) == {"settings", "environment", "handlers_built"}
    assert list(result["settings"]) == list(Settings.model_fields)
    for entry in (*result["settings"].values(), *result["environment"].values()):
        assert set(entry) == {"value", "source", "from"}
        assert entry["source"] in {"default", "env", "file", "flag"}
    assert set(result["environment"]) == {
        "console_token",
        "console_public_url",
        "https_proxy",
        "http_proxy",
        "no_proxy",
        "secrets",
    }
    assert result["handlers_built"] is False
    assert result["settings"]["routes"]["value"] == [
        {
            "condition": "any",
            "handlers": ["persist"],
            "function": None,
            "error_type": None,
            "queue": None,
        }
    ]


def test_the_table_shows_routes_and_handlers_readably(toml: Path, tmp_path: Path) -> None:
    env = {"LAMBDA_DESTINATIONS_CONCURRENCY": "7"}

    result = cli("config", "--config", str(toml), env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert rows["SETTING"].split() == ["SETTING", "VALUE", "SOURCE"]
    assert rows["concurrency"].split() == ["concurrency", "7", "LAMBDA_DESTINATIONS_CONCURRENCY"]
    assert rows["wait_time"].split() == ["wait_time", "20", "default"]
    assert rows["store"].split()[1:] == [
        "sqlite:///from-the-file.db",
        "the",
        "TOML",
        "file",
        str(toml),
    ]
    assert "failure: persist, hook (function orders-*)" in rows["routes[1]"]
    assert rows["handlers.hook.type"].split()[1] == "webhook"
    assert rows["handlers.hook.url"].split()[1] == "https://hooks.example.com/***"
    # the tables were not built: it says how to
    assert "config --check" in result.stderr


@pytest.mark.parametrize(
    ("routes", "rows"),
    [
        pytest.param(
            [{"condition": "failure", "handlers": ["persist"]}],
            [
                "routes[1] failure: persist",
                "routes[else] any: persist (the records no route takes)",
            ],
            id="no route takes every record",
        ),
        pytest.param(
            [], ["routes[else] any: persist (the records no route takes)"], id="no route at all"
        ),
        pytest.param(
            [{"condition": "failure", "handlers": ["persist"]}, {"handlers": ["persist"]}],
            ["routes[1] failure: persist", "routes[2] any: persist"],
            id="a last route takes the rest",
        ),
    ],
)
def test_the_table_says_where_records_no_route_takes_go(
    routes: list[dict[str, Any]], rows: list[str], tmp_path: Path
) -> None:
    # given: routes of which none may match a record (before: they were shown alone, and an
    # empty list as no row at all, though the worker persists every record no route takes)
    env = {"LAMBDA_DESTINATIONS_QUEUES": "q", "LAMBDA_DESTINATIONS_ROUTES": json.dumps(routes)}

    # when
    result = cli("config", env=env, cwd=tmp_path)

    # then
    assert result.returncode == 0, result.stderr
    shown = [" ".join(line.split()[:-1]) for line in result.stdout.splitlines()]
    assert [line for line in shown if line.startswith("routes")] == rows


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal(toml: Path, width: int) -> None:
    status, lines = cli_in_a_terminal("config", "--config", str(toml), env={}, width=width)

    assert status == 0, lines
    assert max(len(line) for line in lines) <= width, lines
    assert any(line.startswith("handlers.hook.timeout") for line in lines), lines


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"LAMBDA_DESTINATIONS_CONCURRENCY": "0"},
            "error: setting 'concurrency' (LAMBDA_DESTINATIONS_CONCURRENCY): 0 is out of range: "
            "use a whole number from 1 to 1000 (32 by default)",
        ),
        (
            {"LAMBDA_DESTINATIONS_ROUTES": "[{"},
            "error: LAMBDA_DESTINATIONS_ROUTES is not valid JSON: write it as JSON (the README's "
            "Configuration shows each setting's form), or set routes in the TOML file",
        ),
    ],
    ids=["out of range", "not JSON"],
)
def test_a_bad_setting_is_the_line_and_code_run_gives(
    env: dict[str, str], line: str, tmp_path: Path
) -> None:
    env = {**env, "LAMBDA_DESTINATIONS_QUEUES": "q", "LAMBDA_DESTINATIONS_OPS_PORT": "0"}

    shown_config = cli("config", env=env, cwd=tmp_path)
    ran = cli("run", "--once", env=env, cwd=tmp_path)

    assert (shown_config.returncode, ran.returncode) == (3, 3)
    assert shown_config.stdout == ""  # nothing half-valid is shown
    assert shown_config.stderr.strip() == ran.stderr.strip() == line


def test_check_builds_the_handlers_as_run_does(toml: Path, tmp_path: Path) -> None:
    # given: a handler option the webhook does not take, in the variable's JSON
    env = {
        "LAMBDA_DESTINATIONS_CONFIG": str(toml),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"hook": {"urll": "x"}}),
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
    }

    checked = cli("config", "--check", env=env, cwd=tmp_path)
    ran = cli("run", "--once", env=env, cwd=tmp_path)
    unchecked = cli("config", "--json", env=env, cwd=tmp_path)

    # then: --check refuses it with run's line and code; without it, it is shown as given
    assert (checked.returncode, ran.returncode) == (3, 3)
    assert checked.stdout == ""
    assert checked.stderr.strip() == ran.stderr.strip()
    assert checked.stderr.startswith(
        "error: handlers.hook.urll (LAMBDA_DESTINATIONS_HANDLERS): unknown setting"
    )
    assert unchecked.returncode == 0
    assert json.loads(unchecked.stdout)["handlers_built"] is False


def test_variables_from_the_secret_are_named_never_shown(tmp_path: Path) -> None:
    # given: the SMTP password and a webhook URL only in LAMBDA_DESTINATIONS_SECRETS (a Secrets
    # Manager secret of key/value pairs, as the templates give it), another key unused
    toml = tmp_path / "settings.toml"
    toml.write_text(
        """
queues = ["q"]
[handlers.mail]
type = "email"
transport = "smtp"
host = "smtp.example.com"
sender = "alerts@example.com"
to = ["oncall@example.com"]
username = "alerts"
password_env = "SMTP_PASSWORD"
[handlers.hook]
type = "webhook"
url_env = "HOOK_URL"
""",
        encoding="utf-8",
    )
    secret = {
        "SMTP_PASSWORD": "pw-4f1c9e",
        "HOOK_URL": "https://hooks.example.com/path-7d2a",
        "UNUSED": "u-93bc",
    }
    env = {"LAMBDA_DESTINATIONS_SECRETS": json.dumps(secret), "LAMBDA_DESTINATIONS_OPS_PORT": "0"}

    # when: shown, checked (the handlers built as run builds them), and as JSON
    table = cli("config", "--config", str(toml), "--check", env=env, cwd=tmp_path)
    as_json = shown("--config", str(toml), env=env, cwd=tmp_path)

    # then: each variable is named with where it was found; the secret's keys by name only
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()}
    assert (
        "SMTP_PASSWORD (set, in LAMBDA_DESTINATIONS_SECRETS)" in rows["handlers.mail.password_env"]
    )
    assert "HOOK_URL (set, in LAMBDA_DESTINATIONS_SECRETS)" in rows["handlers.hook.url_env"]
    assert rows["secrets"].split()[1:] == [
        "3",
        "keys:",
        "HOOK_URL,",
        "SMTP_PASSWORD,",
        "UNUSED",
        "LAMBDA_DESTINATIONS_SECRETS",
    ]
    assert as_json["environment"]["secrets"]["from"] == "LAMBDA_DESTINATIONS_SECRETS"
    everything = table.stdout + table.stderr + json.dumps(as_json)
    for value in secret.values():
        assert value not in everything
    assert "no setting" not in table.stderr  # the variable is ours, not a misspelt setting


def test_a_secret_that_is_not_json_is_the_line_and_code_run_gives(tmp_path: Path) -> None:
    env = {
        "LAMBDA_DESTINATIONS_QUEUES": "q",
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"hook": {"type": "webhook", "url_env": "U"}}),
        "LAMBDA_DESTINATIONS_SECRETS": "U=https://hooks.example.com/path-7d2a",
    }

    shown_config = cli("config", "--check", env=env, cwd=tmp_path)
    ran = cli("run", "--once", env=env, cwd=tmp_path)

    assert (shown_config.returncode, ran.returncode) == (3, 3)
    assert shown_config.stderr.strip() == ran.stderr.strip()
    assert ran.stderr.startswith(
        "error: LAMBDA_DESTINATIONS_SECRETS is not JSON (line 1, column 1)"
    )
    assert "path-7d2a" not in ran.stderr + ran.stdout
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    ("proxy", "host"),
    [
        ("http://user:pw-51c0de@[::1", "http://[::1"),  # an unclosed bracket
        ("http://user:pw-51c0de@[::1]:3128/", "http://[::1]:3128"),
    ],
)
def test_a_proxy_url_that_does_not_parse_is_shown_without_its_credentials(
    proxy: str, host: str, tmp_path: Path
) -> None:
    # given: a proxy variable pasted wrong, credentials in it

    # when
    table = cli("config", env={"HTTPS_PROXY": proxy}, cwd=tmp_path)
    as_json = cli("config", "--json", env={"HTTPS_PROXY": proxy}, cwd=tmp_path)

    # then: shown as far as it goes, never its password (before: a traceback)
    assert (table.returncode, as_json.returncode) == (0, 0), table.stderr + as_json.stderr
    assert json.loads(as_json.stdout)["environment"]["https_proxy"]["value"] == host
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()}
    assert rows["https_proxy"][1:] == [host, "HTTPS_PROXY"]
    assert "pw-51c0de" not in table.stdout + table.stderr + as_json.stdout + as_json.stderr


@pytest.mark.parametrize("mark", ["/", "#"])
def test_a_store_password_with_an_at_sign_and_a_url_mark_is_never_shown(
    mark: str, tmp_path: Path
) -> None:
    # given: a password written as it is, an "@" in it and then a "/" or a "#"
    url = f"postgresql://app:p@ss{mark}w0rd-7c1e@db.internal/results"

    # when
    table = cli("config", "--store", url, cwd=tmp_path)
    as_json = cli("config", "--json", "--store", url, cwd=tmp_path)

    # then: none of it (before: what followed its "/" or "#")
    assert (table.returncode, as_json.returncode) == (0, 0), table.stderr + as_json.stderr
    value = "postgresql://app:***@db.internal/results"
    assert json.loads(as_json.stdout)["settings"]["store"]["value"] == value
    assert value in table.stdout
    assert "w0rd" not in table.stdout + table.stderr + as_json.stdout + as_json.stderr
