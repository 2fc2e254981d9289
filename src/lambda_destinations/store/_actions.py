"""The action ledger: what operators did by hand (ignore, reopen, an edited replay, a purge).

The replay ledger (``_ledger.py``) records each attempt to re-invoke; this table records the
decision behind it when a person made one, with who, when, why and what (an edited payload is
kept here whole). Declared on the shared ``_tables.metadata``; migration version 4 in
:mod:`.migrations` is its frozen DDL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lambda_destinations.store._access import (
    SqlAccess,
    from_row,
    make_storable,
    storable,
    text_columns,
)
from lambda_destinations.store._tables import metadata
from lambda_destinations.store._types import UTCDateTime, big_id, json_value
from lambda_destinations.store.base import OperatorAction

operator_actions = sa.Table(
    "operator_actions",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("detail", json_value()),
    sa.Column("nonce", sa.Text),  # a console form's one-time token (version 14)
    sa.Index("ix_operator_actions_target_at", "target", "at"),
    sa.Index("ux_operator_actions_nonce", "nonce", unique=True),
)

_FIELDS = ("at", "actor", "action", "target", "reason", "detail", "nonce")
# An operator's reason, a tool's actor: text from outside (the detail is JSON).
_TEXTS = text_columns(operator_actions)


def _action_values(action: OperatorAction) -> dict[str, Any]:
    values = {name: getattr(action, name) for name in _FIELDS}
    make_storable(values, _TEXTS)
    return values


class ActionsMixin(SqlAccess):
    """The action-ledger methods of :class:`~lambda_destinations.store.base.Store`."""

    async def add_action(self, action: OperatorAction) -> int:
        values = _action_values(action)
        stmt = sa.insert(operator_actions).values(**values).returning(operator_actions.c.id)
        async with self._write() as conn:
            action.id = int((await conn.execute(stmt)).scalar_one())
        return action.id

    async def add_action_once(self, action: OperatorAction) -> int | None:
        if action.nonce is None:
            raise ValueError("an action kept once needs its form's one-time token")
        values = _action_values(action)
        stmt = (
            self._insert(operator_actions)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[operator_actions.c.nonce])
            .returning(operator_actions.c.id)
        )
        async with self._write() as conn:
            new_id = (await conn.execute(stmt)).scalar()
        if new_id is None:
            return None
        action.id = int(new_id)
        return action.id

    async def action_by_nonce(self, nonce: str) -> OperatorAction | None:
        # As add_action_once kept it (a NUL as U+FFFD).
        stmt = sa.select(operator_actions).where(operator_actions.c.nonce == storable(nonce))
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else from_row(OperatorAction, row)

    async def set_action_detail(self, action_id: int, detail: Any) -> None:
        stmt = (
            sa.update(operator_actions)
            .where(operator_actions.c.id == action_id)
            .values(detail=detail)
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    async def actions(self, target: str, *, limit: int | None = 100) -> list[OperatorAction]:
        c = operator_actions.c
        stmt = (
            sa.select(operator_actions).where(c.target == target).order_by(c.at.desc(), c.id.desc())
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [from_row(OperatorAction, row) for row in rows]
