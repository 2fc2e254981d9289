"""What the AWS SDK refuses before a request is sent (an endpoint URL it cannot use, a profile
that does not exist) and a settings file that is a folder: one line, exit 3, for every
command, as `run` already said it."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.utils import is_valid_uri
from click.testing import CliRunner, Result

from lambda_destinations.cli import cli
from lambda_destinations.config import load_settings
from lambda_destinations.errors import ConfigError


def error_line(result: Result) -> str:
    assert "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.parametrize(
    "url",
    [
        "http://my_host:4566",  # a Compose service's name with an underscore
        "http://-bad.example:4566",
        "http://bad-.example:4566",
        "http://ünï.example:4566",
        "http://127.0.0.1 :4566",
        "http://127.0.0.1:45\t66",
        "http://a..b:4566",
        "http://localstack:4566",
        "http://LOCALSTACK.example.:4566",
        "http://127.0.0.1:4566",
        "http://[::1]:4566",
        "https://sqs.us-east-1.amazonaws.com",
        "http://xn--n-nga1b.example",
    ],
)
def test_the_endpoint_setting_takes_what_botocore_takes(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: a host botocore refuses passed the setting's check, and the first command that
    # made a client ended in botocore's "ValueError: Invalid endpoint" traceback, exit 1
    monkeypatch.chdir(tmp_path)  # no dev.toml of another test's
    if is_valid_uri(url):
        assert load_settings(endpoint_url=url).endpoint_url == url
    else:
        with pytest.raises(ConfigError, match=r"^setting 'endpoint_url'"):
            load_settings(endpoint_url=url)


def test_a_unicode_endpoint_host_is_refused_with_its_ascii_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["dlq", "peek", "q", "--endpoint-url", "http://ünï.example:4566"]
    )
    assert result.exit_code == 3, result.output
    assert error_line(result) == (
        "error: setting 'endpoint_url' (--endpoint-url): its host 'ünï.example' is not a host "
        "name AWS's SDK takes (letters, digits, '-' and '.', no '-' at either end of a part, "
        "no '_'): write it as xn--n-nga1b.example"
    )


@pytest.mark.parametrize(
    ("variable", "args"),
    [
        ("AWS_ENDPOINT_URL_SQS", ["dlq", "peek", "q"]),
        ("AWS_ENDPOINT_URL", ["simulate", "--queue", "q", "-n", "1"]),
        ("AWS_ENDPOINT_URL_LAMBDA", ["invoke", "orders-api"]),
    ],
)
def test_an_sdk_endpoint_variable_botocore_refuses_is_one_line_and_exit_3(
    variable: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: no endpoint setting, and botocore's own variable set to what it cannot use (a
    # password in it, to be masked)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAMBDA_DESTINATIONS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv(variable, "http://u:s3cr3t@my_host:4566")

    # when
    result = CliRunner().invoke(cli, args)

    # then: before, botocore's "ValueError: Invalid endpoint" traceback, exit 1
    assert result.exit_code == 3, result.output
    line = error_line(result)
    assert line.startswith(f"error: the endpoint 'http://u:***@my_host:4566' ({variable}) for ")
    assert line.endswith(
        "is not a URL AWS's SDK takes: give an http:// or https:// URL whose host is a name or "
        "an address, such as http://127.0.0.1:4566, or unset it (LAMBDA_DESTINATIONS_ENDPOINT_URL"
        " sets one endpoint for every service)"
    )
    assert "s3cr3t" not in result.output


@pytest.mark.parametrize(
    "args", [["dlq", "peek", "q"], ["invoke", "orders-api"], ["simulate", "--queue", "q"]]
)
def test_a_profile_that_does_not_exist_is_exit_3_with_the_fix_for_every_command(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))

    result = CliRunner().invoke(cli, args)

    # before: exit 1 and botocore's words alone ("The config profile (nosuch) could not be
    # found"), where `run` and `doctor` said which profile and what to fix
    assert result.exit_code == 3, result.output
    assert error_line(result) == (
        "error: cannot get the AWS credentials from the AWS profile 'nosuch' (AWS_PROFILE) "
        "(ProfileNotFound: The config profile (nosuch) could not be found): fix AWS_PROFILE or "
        "the profile in the AWS config file"
    )


def test_a_config_option_naming_a_folder_is_the_settings_file_s_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()

    result = CliRunner().invoke(cli, ["failures", "list", "--config", "conf"])

    # before: click's "Invalid value for '--config': File 'conf' is a directory.", exit 2,
    # with no fix, where LAMBDA_DESTINATIONS_CONFIG naming it was exit 3 with one
    assert result.exit_code == 3, result.output
    assert error_line(result) == (
        "error: config file conf is a folder: name a readable TOML file in --config"
    )
