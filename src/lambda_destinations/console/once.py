"""Forms that act once: each carries a one-time token, which the store keeps once with the
action's ledger entry, before the action is done. The same form posted again (a double click
without the pages' script, Back then submit, another console process on the same store) does
nothing and answers as its first post did, from that entry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from lambda_destinations.store import OperatorAction, Store


class OnceForms:
    """The forms this process acts on now, by one-time token: a second post of one waits for
    the first to end, so that its answer says what the first did (a browser shows the answer
    to its last post only)."""

    def __init__(self) -> None:
        self._acting: dict[str, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def keep(
        self, store: Store, action: OperatorAction
    ) -> AsyncIterator[OperatorAction | None]:
        """Keep ``action`` in the action ledger and give None: the block does the action (and
        may set the entry's detail). When its form was posted before, keep nothing and give
        that post's entry, once that post ended: the block answers as it did.

        An action without a token (a script's, with the bearer token) is kept and done every
        time."""
        nonce = action.nonce
        if nonce is None:
            await store.add_action(action)
            yield None
            return
        await self._first_ended(nonce)
        # Marked before the next await: of this process's posts of the form, one acts.
        self._acting[nonce] = acting = asyncio.Event()
        try:
            if await store.add_action_once(action) is not None:
                yield None
            else:  # posted before (a double click, Back then submit, another console process)
                yield _same_form(await store.action_by_nonce(nonce) or action, action)
        finally:
            del self._acting[nonce]
            acting.set()

    async def first_post(self, store: Store, nonce: str) -> OperatorAction | None:
        """The ledger entry of the form's first post (None: not posted), once that post ended
        if this process makes it."""
        await self._first_ended(nonce)
        return await store.action_by_nonce(nonce)

    async def _first_ended(self, nonce: str) -> None:
        """Wait while a post of the form acts in this process (a double click's first)."""
        while (acting := self._acting.get(nonce)) is not None:
            await acting.wait()


def _same_form(first: OperatorAction, action: OperatorAction) -> OperatorAction:
    """``first``, the entry of the token's first post, when it did what ``action`` would; a
    token a script sent again with another action or target is refused (409): it did nothing."""
    if (first.action, first.target) != (action.action, action.target):
        raise web.HTTPConflict(
            text="the form's one-time token was used for another action: send a new one\n"
        )
    return first
