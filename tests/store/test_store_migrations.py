"""The migration list itself (applying it is tested on both backends in test_store_behaviour)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lambda_destinations.store.migrations import MIGRATIONS, Migration, check_migrations


def _noop(conn: sa.Connection) -> None:
    return None


def test_the_shipped_migrations_are_in_order() -> None:
    check_migrations(MIGRATIONS)

    assert MIGRATIONS[0].version == 1


@pytest.mark.parametrize("versions", [[2], [1, 3], [1, 1], [2, 1]])
def test_gaps_repeats_and_disorder_are_refused(versions: list[int]) -> None:
    migrations = tuple(Migration(v, f"v{v}", _noop) for v in versions)

    with pytest.raises(ValueError, match="1, 2, 3"):
        check_migrations(migrations)
