"""ECS task scale-in protection: a task with messages in flight is never chosen for scale-in.

When ECS runs the worker it sets ``ECS_AGENT_URI`` in the container. While messages are in
flight the worker asks the agent to protect its task (``PUT $ECS_AGENT_URI/task-protection/v1/
state`` with ``{"ProtectionEnabled": true, "ExpiresInMinutes": N}``), renews that before it
expires, and clears it (``{"ProtectionEnabled": false}``) once the worker has been idle for a
moment, so service auto scaling and deployments stop only idle tasks. The agent makes the
``ecs:UpdateTaskProtection`` call with the task role's credentials.

The protection is advice to ECS, never a condition of work: an agent that is away, slow or
refuses only costs a warning (one per failure streak) and a retry with backoff; the worker goes
on receiving and handling messages either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from lambda_destinations.redact import echoed, mask_url
from lambda_destinations.retrying import backoff_delay

log = structlog.get_logger("lambda_destinations.worker.protection")

STATE_PATH = "/task-protection/v1/state"
REQUEST_TIMEOUT = 5.0  # seconds; the agent is on the task's own network
EXIT_TIMEOUT = 0.4  # seconds the clearing PUT may take at exit: shutdown has its own deadline
IDLE_AFTER = 10.0  # seconds idle before protection is cleared (messages come in bursts)
RENEW_FRACTION = 0.5  # renew once half of the expiry has passed
RETRY_BASE = 1.0
RETRY_MAX = 30.0


class AgentRefused(Exception):
    """The agent answered, but did not set the protection (its failure or error)."""


def agent_uri_problem(agent_uri: str) -> str | None:
    """Why ``agent_uri`` cannot be the agent's endpoint (no http(s) URL with a host), or None."""
    try:
        parts = urlsplit(agent_uri.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http:// URL with a host"
    return None


class TaskProtection:
    """Keeps the ECS task protected from scale-in while the worker has messages in flight.

    The worker reports its in-flight count with ``in_flight(n)``; ``run()`` (a task the worker
    starts) talks to the agent. Without an agent URI (not on ECS, or turned off), ``run()``
    returns at once and ``in_flight`` costs nothing.
    """

    def __init__(
        self,
        agent_uri: str | None,
        *,
        minutes: int = 10,
        idle_after: float = IDLE_AFTER,
        minute: float = 60.0,
        retry_base: float = RETRY_BASE,
        request_timeout: float = REQUEST_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        problem = agent_uri_problem(agent_uri) if agent_uri else None
        if agent_uri and problem:
            # Each request would fail alike, forever: say it once, and ask none.
            log.warning(
                f"ECS_AGENT_URI {echoed(mask_url(agent_uri))!r} is no agent endpoint "
                f"({problem}): task scale-in protection is off; leave ECS_AGENT_URI to ECS, "
                "which sets it in every task, or unset it",
            )
        self.enabled = bool(agent_uri) and not problem
        self._url = (agent_uri or "").strip().rstrip("/") + STATE_PATH
        self._minutes = minutes
        self._idle_after = idle_after
        self._minute = minute  # seconds per minute of expiry; tests shorten it
        self._retry_base = retry_base
        self._timeout = request_timeout
        self._clock = clock
        self._count = 0
        self._changed = asyncio.Event()
        self._idle_since: float | None = None
        self._renew_at = 0.0
        self._failures = 0
        self.protected = False
        # A request to protect that got no answer (timed out, cut off, cancelled) may have
        # been carried out all the same: the protection is cleared as if it had been.
        self._unsure = False

    @property
    def busy(self) -> bool:
        return self._count > 0

    def in_flight(self, count: int) -> None:
        """The worker's messages in flight changed to ``count``."""
        was_busy = self.busy
        self._count = count
        if self.enabled and self.busy != was_busy:
            self._changed.set()

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def run(self) -> None:
        """Follow the in-flight count until cancelled; clear the protection on the way out."""
        if not self.enabled:
            return
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            try:
                while True:
                    # Cleared before the step: a change while the PUT is out wakes the wait.
                    self._changed.clear()
                    wait = await self._step(http)
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancellation that arrives as the event is set, and the exit below
                    # would then never run.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._changed.wait()
            finally:
                await self._clear_on_exit(http)

    async def _step(self, http: aiohttp.ClientSession) -> float | None:
        """Bring the agent's state in line with the worker's; seconds until the next look."""
        now = self._now()
        if self.busy:
            self._idle_since = None
            if self.protected and now < self._renew_at:
                return self._renew_at - now
            if not await self._put(http, enabled=True):
                return self._retry_delay()
            self.protected, self._unsure = True, False
            self._renew_at = now + self._minutes * self._minute * RENEW_FRACTION
            return self._renew_at - now
        if not self.protected and not self._unsure:
            return None  # idle and unprotected: nothing to do until work arrives
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < self._idle_after:
            return self._idle_since + self._idle_after - now
        if not await self._put(http, enabled=False):
            return self._retry_delay()
        self.protected = self._unsure = False
        return None

    def _retry_delay(self) -> float:
        return backoff_delay(self._failures, self._retry_base, RETRY_MAX)

    async def _put(self, http: aiohttp.ClientSession, *, enabled: bool) -> bool:
        """One PUT to the agent; False (and a warning for the first of a streak) on failure."""
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self._minutes
        try:
            async with http.put(self._url, json=body) as response:
                answer = _parsed(await response.text(errors="replace"))
            if response.status != 200 or not isinstance(answer, dict):
                raise AgentRefused(f"HTTP {response.status}: {describe(answer)}")
            if "protection" not in answer:
                raise AgentRefused(describe(answer))
        except asyncio.CancelledError:
            self._unsure = self._unsure or enabled
            raise
        except Exception as exc:  # noqa: BLE001 - a failing agent must never stop the worker
            # Refused, or never sent: the agent set nothing. Else it may have.
            answered = isinstance(exc, AgentRefused | aiohttp.ClientConnectorError)
            self._unsure = self._unsure or (enabled and not answered)
            self._failures += 1
            if self._failures == 1:
                log.warning(
                    f"the ECS agent did not {'set' if enabled else 'clear'} task scale-in "
                    "protection; retrying",
                    protect=enabled,
                    error=str(exc) or type(exc).__name__,
                )
            return False
        if self._failures:
            done = "set again" if enabled else "cleared at last"
            log.info(f"task scale-in protection {done}", after_failures=self._failures)
            self._failures = 0
        log.debug(
            "task scale-in protection", protected=enabled, minutes=body.get("ExpiresInMinutes")
        )
        return True

    async def _clear_on_exit(self, http: aiohttp.ClientSession) -> None:
        """Best effort, once: a stopping worker has nothing left worth protecting."""
        if not self.protected and not self._unsure:
            return
        try:
            async with asyncio.timeout(min(self._timeout, EXIT_TIMEOUT)):
                if await self._put(http, enabled=False):
                    self.protected = self._unsure = False
        except TimeoutError:
            if self.protected or not self._failures:  # else its failure streak was said
                log.warning(
                    "could not clear task scale-in protection at exit; it expires by itself"
                )


def _parsed(text: str) -> object:
    """The agent's answer: its JSON, or its text when it is none (a plain-text 404)."""
    try:
        return json.loads(text)
    except ValueError:
        return " ".join(text.split())


def describe(answer: object) -> str:
    """The agent's failure or error in one line."""
    if isinstance(answer, dict):
        for key in ("failure", "error"):
            detail = answer.get(key)
            if isinstance(detail, dict):
                parts = [detail.get(k) for k in ("Code", "Reason", "Message", "Detail")]
                return f"{key}: " + ": ".join(str(p) for p in parts if p)
    return str(answer)[:200]


__all__ = ["TaskProtection"]
