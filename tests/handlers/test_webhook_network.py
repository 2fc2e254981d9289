"""The webhook handler in a company's network: through the egress proxy the environment names
(HTTPS_PROXY, HTTP_PROXY, NO_PROXY), to an internal https:// endpoint whose CA is private
(cert_bundle). Against a real forward proxy (tests/forward_proxy.py) and a real TLS receiver."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from handler_helpers import failure_record, send_records
from structlog.testing import capture_logs
from test_webhook_handler import Receiver, drain, hook_run, hook_settings

from certificates import self_signed_certificate
from forward_proxy import ForwardProxy
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers.webhook import build

PROXY_PASSWORD = "pr0xy-S3cret"


class TlsReceiver:
    """An https:// receiver on 127.0.0.1 with a certificate of its own CA (``ca``)."""

    def __init__(self, directory: Path, *, expired: bool = False) -> None:
        self.ca, self._key = self_signed_certificate(directory, expired=expired)
        self.bodies: list[Any] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def take(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.Response(text="ok")

    async def __aenter__(self) -> TlsReceiver:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca, self._key)
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context).start()
        self.url = f"https://127.0.0.1:{self._runner.addresses[0][1]}/hooks/T0K3N"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[TlsReceiver]:
    async with TlsReceiver(tmp_path) as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _no_proxy_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the proxy variables it means; none come from the machine."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def with_login(proxy: ForwardProxy, password: str = PROXY_PASSWORD) -> str:
    return proxy.url.replace("http://", f"http://ops:{password}@")


Through = Callable[..., Awaitable[tuple[Any, Any, list[dict[str, Any]]]]]


@pytest.fixture
def through(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> Through:
    """One failure record through a worker with the webhook ``options``: (the drain's stats,
    the webhook's handler run, the log lines)."""

    async def send(**options: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
        url, _ = make_queue("hook-net")
        record = failure_record()
        send_records(sqs, url, [record])
        settings = hook_settings(
            endpoint_url, url, sqlite_url, worker={"handler_attempts": 1}, **options
        )
        with capture_logs() as logs:
            stats = await drain(settings)
        return stats, await hook_run(sqlite_url, record), logs

    return send


async def test_an_https_webhook_goes_through_the_proxy_with_its_credentials(
    through: Through,
    tls_receiver: TlsReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: an egress proxy that asks for credentials, named by HTTPS_PROXY with them
    async with ForwardProxy(credentials=f"ops:{PROXY_PASSWORD}") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", with_login(proxy))

        # when: a record goes to an internal https:// receiver of a private CA
        stats, run, _ = await through(
            url=tls_receiver.url,
            cert_bundle=str(tls_receiver.ca),
        )

    # then: one tunnel through the proxy, and the receiver has the record
    port = tls_receiver.url.split(":")[2].split("/")[0]
    assert proxy.seen == [f"CONNECT 127.0.0.1:{port}"], (stats, run)
    assert stats.outcomes["ack"] == 1, run.last_error
    assert len(tls_receiver.bodies) == 1


async def test_no_proxy_sends_a_webhook_around_the_proxy(
    through: Through,
    tls_receiver: TlsReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a proxy, and NO_PROXY listing the receiver's host (among others)
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "169.254.169.254,127.0.0.1,.internal")

        # when
        stats, run, _ = await through(
            url=tls_receiver.url,
            cert_bundle=str(tls_receiver.ca),
        )

    # then: straight to the receiver, nothing through the proxy
    assert proxy.seen == []
    assert stats.outcomes["ack"] == 1, run.last_error
    assert len(tls_receiver.bodies) == 1


@pytest.mark.parametrize("listed", ["its port", "another port"])
async def test_no_proxy_with_a_port_sends_a_webhook_to_that_port_around_the_proxy(
    through: Through,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    listed: str,
) -> None:
    # given: HTTP_PROXY, and NO_PROXY listing the receiver's host with a port (as botocore
    # and curl read it: that host at that port alone)
    hook_url = receiver.url.replace("127.0.0.1", "localhost")
    port = int(hook_url.split(":")[2].split("/")[0])
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        entry = f"localhost:{port if listed == 'its port' else port + 1}"
        monkeypatch.setenv("NO_PROXY", f"127.0.0.1,{entry}")

        # when
        stats, run, _ = await through(url=hook_url)

    # then: the receiver's port listed, straight there; another port listed, through the proxy
    assert proxy.seen == ([] if listed == "its port" else [f"POST {hook_url}"])
    assert stats.outcomes["ack"] == 1, run.last_error
    assert len(receiver.requests) == 1


async def test_an_http_webhook_goes_through_http_proxy(
    through: Through,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: HTTP_PROXY for http:// (the AWS endpoint, 127.0.0.1, is exempt by NO_PROXY), and
    # a receiver named by another host
    async with ForwardProxy(credentials=f"ops:{PROXY_PASSWORD}") as proxy:
        monkeypatch.setenv("HTTP_PROXY", with_login(proxy))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        hook_url = receiver.url.replace("127.0.0.1", "localhost")

        # when
        stats, run, _ = await through(url=hook_url)

    # then: the POST went through the proxy, in absolute form, and arrived
    assert proxy.seen == [f"POST {hook_url}"]
    assert stats.outcomes["ack"] == 1, run.last_error
    assert len(receiver.requests) == 1
    assert "Proxy-Authorization" not in receiver.requests[0]["headers"]


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_a_proxy_that_wants_other_credentials_is_retried_and_named_without_them(
    through: Through,
    tls_receiver: TlsReceiver,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    # given: a proxy whose password is not the one HTTPS_PROXY (or HTTP_PROXY) gives
    async with ForwardProxy(credentials="ops:another") as proxy:
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", with_login(proxy))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        hook_url = tls_receiver.url if scheme == "https" else receiver.url
        hook_url = hook_url.replace("127.0.0.1", "localhost")

        # when
        stats, run, logs = await through(
            url=hook_url,
            cert_bundle=str(tls_receiver.ca),
        )

    # then: retried (nothing reached the receiver; the proxy's settings can be fixed), one line
    # naming the proxy and the fix, never its password
    assert len(proxy.seen) == 1
    assert stats.outcomes["retry"] == 1
    variable = f"{scheme.upper()}_PROXY"
    assert run.last_error.endswith(
        f": the proxy {proxy.url} ({variable}) answered 407"
        + (" Proxy Authentication Required" if scheme == "https" else "")
        + f": it asks for credentials: give its user and password in {variable}, before its "
        "host (user:password@host:port)"
    ), run.last_error
    assert PROXY_PASSWORD not in repr(logs)


async def test_a_proxy_policy_that_refuses_the_host_says_what_to_change(
    through: Through,
    tls_receiver: TlsReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a proxy whose policy refuses every host
    async with ForwardProxy(refuse=403) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", with_login(proxy))

        # when
        stats, run, logs = await through(url=tls_receiver.url)

    # then: retried (it was not the receiver that refused), and said so
    assert stats.outcomes["retry"] == 1
    assert not tls_receiver.bodies
    assert run.last_error.endswith(
        f": the proxy {proxy.url} (HTTPS_PROXY) answered 403 Forbidden: have the proxy allow the "
        "URL's host, or list the host in NO_PROXY when the worker reaches it without the proxy"
    ), run.last_error
    assert PROXY_PASSWORD not in repr(logs)


async def test_a_proxy_that_is_down_is_named(
    through: Through,
    tls_receiver: TlsReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: HTTPS_PROXY names a port with no proxy behind it
    async with ForwardProxy() as stopped:
        down = stopped.url
    monkeypatch.setenv("HTTPS_PROXY", down.replace("http://", f"http://ops:{PROXY_PASSWORD}@"))

    # when
    stats, run, logs = await through(url=tls_receiver.url)

    # then: retried, with the proxy named (not the receiver, which was never asked)
    assert stats.outcomes["retry"] == 1
    assert run.last_error.endswith(
        f": cannot connect to the proxy {down} (Connect call failed ('127.0.0.1', "
        f"{down.rsplit(':', 1)[1]})): check HTTPS_PROXY and that the proxy runs"
    ), run.last_error
    assert PROXY_PASSWORD not in repr(logs) + run.last_error


async def test_cert_bundle_trusts_a_private_ca(
    through: Through,
    tls_receiver: TlsReceiver,
) -> None:
    # when: no proxy, the receiver's CA named in cert_bundle
    stats, run, _ = await through(
        url=tls_receiver.url,
        cert_bundle=str(tls_receiver.ca),
    )

    # then
    assert stats.outcomes["ack"] == 1, run.last_error
    assert len(tls_receiver.bodies) == 1


@pytest.mark.parametrize(
    ("host", "expired", "said"),
    [
        (
            "localhost",  # the certificate names 127.0.0.1 alone
            False,
            "the server's certificate does not name the URL's host localhost (Hostname mismatch, "
            "certificate is not valid for 'localhost'.): put a host it names in the url, or give "
            "the server a certificate for localhost",
        ),
        (
            "127.0.0.1",
            True,
            "the server's certificate has expired (certificate has expired): renew it on the "
            "server, or check this machine's clock",
        ),
    ],
    ids=["other host", "expired"],
)
async def test_a_certificate_for_another_host_or_expired_names_its_own_fix(
    through: Through, tmp_path: Path, host: str, expired: bool, said: str
) -> None:
    # given: the receiver's CA trusted by cert_bundle; its certificate is for another host, or
    # expired: "name its CA's PEM file in cert_bundle" was said, which was done already
    async with TlsReceiver(tmp_path, expired=expired) as receiver:
        url = receiver.url.replace("127.0.0.1", host)

        # when
        stats, run, _ = await through(url=url, cert_bundle=str(receiver.ca))

    # then: retried (the server's certificate may be replaced), the fix its own
    assert stats.outcomes["retry"] == 1
    assert not receiver.bodies
    assert run.last_error.endswith(said), run.last_error
    assert "cert_bundle" not in run.last_error


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot be read (No such file or directory)"),
        ("not PEM", "holds no PEM certificates"),
    ],
)
def test_a_cert_bundle_that_cannot_be_loaded_stops_the_start(
    tmp_path: Path, content: str | None, why: str
) -> None:
    bundle = tmp_path / "internal-ca.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(ConfigError) as raised:
        build("hook", {"url": "https://hooks.internal/x", "cert_bundle": str(bundle)}, None)  # type: ignore[arg-type]
    assert f"handlers.hook.cert_bundle: {bundle} {why}" in str(raised.value)
    assert "name a PEM file of CA certificates" in str(raised.value)
