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
    migrations = tuple(Migration(v, f"v{v}", _noop, oldest_writer=1) for v in versions)

    with pytest.raises(ValueError, match="1, 2, 3"):
        check_migrations(migrations)


@pytest.mark.parametrize(
    ("oldest_writers", "refused"),
    [
        ([1, 3], "migration 2: oldest_writer must be from 1 to 2, not 3"),
        ([1, 2, 1], "migration 3: oldest_writer must be from 2 to 3, not 1"),
        ([0], "migration 1: oldest_writer must be from 1 to 1, not 0"),
    ],
)
def test_an_oldest_writer_newer_than_its_version_or_older_than_the_previous_is_refused(
    oldest_writers: list[int], refused: str
) -> None:
    migrations = tuple(
        Migration(v, f"v{v}", _noop, oldest_writer=w) for v, w in enumerate(oldest_writers, 1)
    )

    with pytest.raises(ValueError, match="oldest_writer") as info:
        check_migrations(migrations)
    assert str(info.value) == refused
