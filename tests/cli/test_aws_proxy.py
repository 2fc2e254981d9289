"""AWS calls through a company's egress proxy (HTTPS_PROXY, HTTP_PROXY) that refuses them or is
down: nothing reached AWS, so the call is retried, even an Invoke, and the line names the proxy
and its variable, never its credentials. The proxy is a real one the tests run; the client is
aiobotocore's, as the worker's is."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from bad_input_helpers import cli, one_error_line

from forward_proxy import ForwardProxy
from lambda_destinations.retrying import answered, classify, describe_error

SECRET = "pr0xy-s3cret"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return port


async def _list_queues() -> BaseException:
    """ListQueues at AWS's own https endpoint: through a proxy that refuses or is down, no
    request leaves this machine."""
    async with get_session().create_client(
        "sqs",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as sqs:
        try:
            await sqs.list_queues()
        except Exception as exc:
            return exc
    raise AssertionError("ListQueues went through a proxy that refuses everything")


@pytest.mark.parametrize(
    ("refuse", "said"),
    [
        (None, "answered 407 Proxy Authentication Required: it asks for credentials: give its "),
        (403, "answered 403 Forbidden: have the proxy allow the URL's host, or list the host in "),
    ],
)
async def test_a_proxy_that_refuses_an_aws_call_is_named_and_the_call_is_retried(
    refuse: int | None, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ForwardProxy(credentials="ops:another", refuse=refuse) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("://", f"://ops:{SECRET}@"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        exc = await _list_queues()
    # then: the tunnel was asked for, and refused; nothing reached AWS
    assert set(proxy.seen) == {"CONNECT sqs.us-east-1.amazonaws.com:443"}
    # before: "Failed to connect to proxy URL", the same for a refusal, a wrong password and a
    # proxy that is down; and not answered, so a replay's Invoke was left in doubt
    assert answered(exc)
    assert classify(exc) == "transient"
    line = describe_error(exc)
    assert f"the proxy {proxy.url} (HTTPS_PROXY) {said}" in line, line
    assert SECRET not in line


async def test_an_aws_call_through_a_proxy_that_is_down_names_the_proxy(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://ops:{SECRET}@127.0.0.1:{closed_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    exc = await _list_queues()
    assert answered(exc)
    assert classify(exc) == "transient"
    line = describe_error(exc)
    assert f"cannot connect to the proxy http://127.0.0.1:{closed_port} (" in line, line
    assert line.endswith("): check HTTPS_PROXY and that the proxy runs"), line
    assert SECRET not in line


def test_a_command_whose_proxy_is_down_says_so_in_one_line(
    endpoint_url: str, closed_port: int, tmp_path: Path
) -> None:
    # given: dev's http:// endpoint, reached through HTTP_PROXY, which is down
    proxy = f"http://ops:{SECRET}@127.0.0.1:{closed_port}"
    env = {"LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url, "HTTP_PROXY": proxy}
    result = cli("dlq", "peek", "orders-dlq", env=env, cwd=tmp_path, unset=("NO_PROXY", "no_proxy"))
    # then: exit 4 (unreachable), the proxy and its variable named, its password not
    assert result.returncode == 4, result.stderr
    line = one_error_line(result)
    assert f"cannot connect to the proxy http://127.0.0.1:{closed_port} (" in line, line
    assert "check HTTP_PROXY and that the proxy runs" in line, line
    assert SECRET not in result.stderr


async def test_a_407_before_an_http_endpoint_is_retried_not_taken_as_aws_refusing(
    endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: an http:// endpoint (a VPC endpoint, an emulator) reached through HTTP_PROXY, whose
    # proxy wants other credentials: its 407 comes back as the call's answer
    async with ForwardProxy(credentials="ops:another") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("://", f"://ops:{SECRET}@"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with get_session().create_client(
            "sqs", endpoint_url=endpoint_url, config=AioConfig(retries={"total_max_attempts": 1})
        ) as sqs:
            with pytest.raises(Exception) as raised:  # noqa: PT011 - the test reads what it is
                await sqs.list_queues()
    assert proxy.seen
    assert all(seen.startswith("POST http://") for seen in proxy.seen)
    # then: retried once fixed, never a permanent refusal that quarantines a handler's message
    assert classify(raised.value) == "transient", describe_error(raised.value)
