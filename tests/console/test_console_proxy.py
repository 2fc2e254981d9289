"""The console behind a reverse proxy, as teams deploy it: a real nginx terminating TLS (the
browser speaks https://ops.example.com, the console gets plain HTTP with X-Forwarded-*), at the
root of its host or under a path prefix nginx strips. Over HTTP with aiohttp's client (whose
resolver maps the public name to 127.0.0.1), and the key flow in Debian's Chromium."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from console_helpers import PUBLIC_HOST, TOKEN, stored_failure

from lambda_destinations.config import load_settings
from lambda_destinations.console.security import LINK_COOKIE, SESSION_COOKIE
from lambda_destinations.store import FailureStatus, Store
from processes import free_port, reap, start_console
from reverse_proxy import Route, nginx

PREFIX = "/lambda-destinations"
Process = subprocess.Popen[str]
T = TypeVar("T")


class _PublicName(AbstractResolver):
    """The public name (and any other) at 127.0.0.1, where the test's nginx listens."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def browser_like() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies as a browser does (Secure ones over TLS only); the proxy's
    certificate is the test's own, not checked."""
    connector = aiohttp.TCPConnector(resolver=_PublicName(), ssl=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@dataclass(frozen=True)
class Deployed:
    """The console behind nginx: where browsers open it, and the failure the store holds."""

    origin: str  # https://ops.example.com:PORT
    root: str  # the prefix nginx strips, or ""
    key: str
    store_url: str
    process: subprocess.Popen[str]

    @property
    def public(self) -> str:
        return self.origin + self.root

    def failure(self, suffix: str = "") -> str:
        return f"{self.public}/failures/{quote(self.key, safe='')}{suffix}"


def _env(store_url: str, token: str | None = TOKEN) -> dict[str, str]:
    env = {**os.environ, "LAMBDA_DESTINATIONS_STORE": store_url}
    env.pop("LAMBDA_DESTINATIONS_CONSOLE_TOKEN", None)
    if token is not None:
        env["LAMBDA_DESTINATIONS_CONSOLE_TOKEN"] = token
    return env


def in_a_thread(work: Coroutine[Any, Any, T]) -> T:
    """``work`` run to its end by a loop of its own: Playwright's sync API keeps one running
    in the test's thread, where ``asyncio.run`` refuses to start another."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _stored(folder: Path) -> tuple[str, str]:
    """A store holding one open failure: its URL, and the failure's key."""
    store_url = f"sqlite:///{folder / 'store.db'}"
    row = in_a_thread(stored_failure(load_settings(store=store_url)))
    return store_url, row.key


@pytest.fixture
def stored(tmp_path: Path) -> tuple[str, str]:
    return _stored(tmp_path)


@contextlib.contextmanager
def console_process(env: dict[str, str], *extra: str) -> Iterator[tuple[Process, str]]:
    """``console`` as a process, and the address it listens on; ended with the test."""
    process, listening = start_console(env, *extra)
    try:
        yield process, listening
    finally:
        reap(process)
        if process.stderr is not None:
            process.stderr.close()


@contextlib.contextmanager
def deployed(folder: Path, root: str, *, token: str | None = TOKEN) -> Iterator[Deployed]:
    """The console started with ``--public-url``, behind nginx with TLS stripping ``root``."""
    store_url, key = _stored(folder)
    port = free_port()
    origin = f"https://{PUBLIC_HOST}:{port}"
    env = _env(store_url, token)
    with console_process(env, "--public-url", f"{origin}{root}/") as (process, listening):
        route = Route(prefix=root)
        with nginx(folder / "nginx", listening, port=port, route=route):
            yield Deployed(origin, root, key, store_url, process)


@pytest.fixture(scope="module", params=["", PREFIX], ids=["at-the-root", "under-a-prefix"])
def behind(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    with deployed(tmp_path_factory.mktemp("proxied"), request.param) as console:
        yield console


async def sign_in(client: aiohttp.ClientSession, at: Deployed) -> aiohttp.ClientResponse:
    """The sign-in form posted as the browser posts it (its Origin is the public one)."""
    return await client.post(
        f"{at.public}/login",
        data={"token": TOKEN, "user": "dana", "next": "/failures"},
        headers={"Origin": at.origin, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _nonce(page: str, action: str) -> str:
    """The one-time token of the page's form posting to ``…/action``."""
    form = page.split(f'/{action}" ', 1)[1]
    return form.split('name="nonce" value="', 1)[1].split('"', 1)[0]


async def _status(at: Deployed) -> FailureStatus:
    async with Store.from_url(at.store_url) as store:
        row = await store.get_invocation(at.key)
        assert row is not None
        return row.status


async def _reasons(at: Deployed) -> list[str | None]:
    """The reasons of the actions the ledger holds for the failure."""
    async with Store.from_url(at.store_url) as store:
        return [action.reason for action in await store.actions(at.key)]


async def test_sign_in_then_ignore_through_a_tls_proxy(behind: Deployed) -> None:
    async with browser_like() as client:
        # given: a page opened before signing in (behind a proxy, every page needs the token)
        opened = await client.get(f"{behind.public}/failures", allow_redirects=False)
        assert opened.status == 303
        assert opened.headers["Location"] == f"{behind.root}/login?next=/failures"

        # when: the sign-in form is posted from https://ops.example.com
        signed = await sign_in(client, behind)

        # then: signed in, back under the prefix, with a cookie for TLS and the prefix only
        assert signed.status == 303, await signed.text()
        assert signed.headers["Location"] == f"{behind.root}/failures"
        cookie = signed.cookies[SESSION_COOKIE]
        assert cookie["secure"] is True
        assert cookie["path"] == f"{behind.root}/"
        assert cookie["samesite"] == "Strict"

        page = await (await client.get(behind.failure())).text()
        ignored = await client.post(
            behind.failure("/ignore"),
            data={
                "csrf": _csrf(page),
                "nonce": _nonce(page, "ignore"),
                "reason": "known upstream issue",
            },
            headers={"Origin": behind.origin, "Sec-Fetch-Site": "same-origin"},
            allow_redirects=False,
        )
        assert ignored.status == 303, await ignored.text()
        assert ignored.headers["Location"].startswith(f"{behind.root}/failures/")
    assert await _status(behind) is FailureStatus.IGNORED


# Every address a page names for the browser to follow: links, forms, the stylesheet, the script.
_ADDRESS = re.compile(r'(?:href|action|src)="(/[^"]*)"')


async def test_every_link_form_and_asset_stays_under_the_prefix(behind: Deployed) -> None:
    async with browser_like() as client:
        assert (await sign_in(client, behind)).status == 303
        pages = [behind.public + "/", f"{behind.public}/failures", behind.failure()]
        addresses = set()
        for url in pages:
            answer = await client.get(url, headers={"Accept": "text/html"})
            assert answer.status == 200, url
            addresses.update(_ADDRESS.findall(await answer.text()))

        assert addresses
        assert [a for a in addresses if not a.startswith(f"{behind.root}/")] == []
        for asset in [a for a in addresses if "/static/" in a]:
            fetched = await client.get(behind.origin + asset)
            assert fetched.status == 200, asset

        # An error page's way back is the page the browser came from, under the prefix too.
        missing = await client.get(
            behind.failure("x/edit"),
            headers={"Accept": "text/html", "Referer": f"{behind.public}/failures?since=2h"},
        )
        assert missing.status == 404
        assert f'href="{behind.root}/failures?since=2h" id="back"' in await missing.text()


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "http://{host}", "null"],
    ids=["another-site", "the-same-host-without-tls", "null"],
)
async def test_another_site_is_still_refused_behind_the_proxy(
    behind: Deployed, origin: str
) -> None:
    origin = origin.format(host=behind.origin.removeprefix("https://"))
    async with browser_like() as client:
        refused = await client.post(
            f"{behind.public}/login",
            data={"token": TOKEN, "user": "mallory", "next": "/"},
            headers={"Origin": origin},
            allow_redirects=False,
        )
        assert refused.status == 403
        assert SESSION_COOKIE not in refused.cookies

        # Signed in, a form posted from another site is refused all the same.
        assert (await sign_in(client, behind)).status == 303
        page = await (await client.get(behind.failure())).text()
        acted = await client.post(
            behind.failure("/ignore"),
            data={"csrf": _csrf(page), "reason": "from elsewhere"},
            headers={"Origin": origin},
            allow_redirects=False,
        )
        assert acted.status == 403
        assert "another site" in await acted.text()
    assert "from elsewhere" not in await _reasons(behind)


@pytest.fixture
def own_token(tmp_path: Path) -> Iterator[Deployed]:
    """A console that made its own token: only the link it prints holds it."""
    with deployed(tmp_path, PREFIX, token=None) as console:
        yield console


async def test_the_printed_sign_in_link_opens_through_the_proxy(own_token: Deployed) -> None:
    at = own_token
    assert at.process.stderr is not None
    lines = [at.process.stderr.readline() for _ in range(3)]
    link = next(line.split()[-1] for line in lines if line.startswith("sign in"))
    assert link.startswith(f"{at.public}/login?token=")
    async with browser_like() as client:
        # when: the operator opens it, then gives their name
        opened = await client.get(link, allow_redirects=False)
        form = await client.post(
            f"{at.public}/login",
            data={"user": "erin", "next": "/"},
            headers={"Origin": at.origin},
            allow_redirects=False,
        )
        said = await form.text()
    # then: the token's slot was kept for the sign-in page under the prefix, over TLS only
    assert opened.status == 303
    assert opened.headers["Location"] == f"{PREFIX}/login?next=/"
    assert opened.cookies[LINK_COOKIE]["path"] == f"{PREFIX}/login"
    assert opened.cookies[LINK_COOKIE]["secure"] is True
    assert form.status == 303, said
    assert form.headers["Location"] == f"{PREFIX}/"


async def test_a_loopback_console_behind_a_proxy_without_its_public_url_is_refused(
    tmp_path: Path, stored: tuple[str, str]
) -> None:
    # nginx's default Host is the upstream's, 127.0.0.1:PORT: the console on loopback took
    # every request for its own machine's and served every page, without sign-in, to whoever
    # reached the proxy.
    with console_process(_env(stored[0])) as (_, listening):
        port = free_port()
        route = Route(host="$proxy_host")
        with nginx(tmp_path / "nginx", listening, port=port, route=route):
            async with browser_like() as client:
                answer = await client.get(f"https://{PUBLIC_HOST}:{port}/failures")
                text = await answer.text()
                direct = await client.get(f"{listening}/failures")

    assert answer.status == 421, text
    assert "came through a proxy (it has X-Forwarded-For)" in text
    assert "--public-url" in text
    assert direct.status == 200  # from this machine, as before


async def test_a_proxy_that_passes_the_prefix_on_is_told_to_strip_it(
    tmp_path: Path, stored: tuple[str, str]
) -> None:
    port = free_port()
    public = f"https://{PUBLIC_HOST}:{port}{PREFIX}"
    with console_process(_env(stored[0]), "--public-url", public) as (_, listening):
        route = Route(prefix=PREFIX, strip=False)
        with nginx(tmp_path / "nginx", listening, port=port, route=route):
            async with browser_like() as client:
                answer = await client.get(f"{public}/login")
                text = await answer.text()

    assert answer.status == 404
    assert f"the proxy passed the path prefix {PREFIX} on to the console" in text
    assert "proxy_pass http://HOST:PORT/;" in text


@pytest.mark.browser
def test_sign_in_ignore_and_reopen_in_chromium_through_the_proxy(
    browser: Any, tmp_path: Path
) -> None:
    with deployed(tmp_path, PREFIX) as at:
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.set_default_timeout(20000)
        failed: list[str] = []
        page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
        try:
            page.goto(f"{at.public}/login?token={TOKEN}")
            page.fill("#user", "frank")
            page.press("#user", "Enter")
            page.wait_for_url(f"{at.public}/")
            assert page.locator(".who strong").inner_text() == "frank"

            page.click("text=Failures")
            page.wait_for_url(f"{at.public}/failures")
            page.goto(at.failure())
            page.fill("#ignore-reason", "known data issue")
            page.click("#ignore")
            page.wait_for_selector("#reopen")
            assert page.locator("#status").inner_text() == "ignored"
            page.fill("#reopen-reason", "it came back")
            page.press("#reopen-reason", "Enter")
            page.wait_for_selector("#ignore")
            assert page.locator("#status").inner_text() == "open"
            # The stylesheet came through the proxy under the prefix, and applies.
            assert page.evaluate("document.styleSheets[0].cssRules.length") > 0
        finally:
            context.close()
        assert failed == []
        assert in_a_thread(_status(at)) is FailureStatus.OPEN
