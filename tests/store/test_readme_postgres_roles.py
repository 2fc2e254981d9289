"""The README's PostgreSQL setup for a DBA, its SQL run as printed (the names made unique):
the owner migrates, the worker's user reads and writes, the reader only reads."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
from store_factories import DeliveryFactory, RowFactory

from lambda_destinations.errors import StoreUnavailable
from lambda_destinations.store import InvocationFilter, Store

README = Path(__file__).parents[2] / "README.md"


def _readme_sql() -> str:
    """The SQL block of "PostgreSQL as a DBA runs it"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### PostgreSQL as a DBA runs it", 1)[1].split("\n### ", 1)[0]
    return section.split("```sql\n", 1)[1].split("```", 1)[0]


@pytest.mark.usefixtures("postgres_available")
async def test_the_readme_roles_let_the_worker_write_and_the_reader_only_read(
    postgres_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: the README's statements in the test's database, with names of this test's own
    tag = uuid.uuid4().hex[:8]
    names = {
        "ld_owner": f"ld_owner_{tag}",
        "ld_reader": f"ld_reader_{tag}",
        "ld": f"ld_{tag}",
        "lambda_destinations": urlsplit(postgres_url).path.lstrip("/"),
        "lambda_dest": f"lambda_dest_{tag}",
    }
    sql = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)], _readme_sql())
    parts = urlsplit(postgres_url)
    users = {role: names[role] for role in ("ld_owner", "ld", "ld_reader")}
    url = {
        role: parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 5432}").geturl()
        for role, user in users.items()
    }
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(sql)
        # when: the owner migrates, the worker saves a record, the reader reads and writes
        async with Store.from_url(url["ld_owner"]) as owner:
            await owner.migrate()
        row = make_row()
        async with Store.from_url(url["ld"]) as worker:
            worker_lacks = await worker.write_problems()
            await worker.save_invocation(row, make_delivery(row), complete_handler="persist")
        async with Store.from_url(url["ld_reader"]) as reader:
            read = await reader.list_invocations(InvocationFilter())
            reader_lacks = await reader.write_problems()
            with pytest.raises(StoreUnavailable) as writing:
                await reader.save_invocation(row, make_delivery(row))
        in_public = await admin.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        for user in users.values():
            await admin.execute(f'DROP OWNED BY "{user}"')
        for user in users.values():
            await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        await admin.close()

    # then: the tables are in the schema; the worker may write every table (doctor's `store
    # grants` is ok) and did; the reader reads it and is refused a write
    assert in_public == 0
    assert worker_lacks == []
    assert [r.key for r in read] == [row.key]
    assert reader_lacks
    assert "permission denied" in str(writing.value)
