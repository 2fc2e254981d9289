"""The persisting floor on the worker's own rows: floor_persist's loop writing what the worker
writes, to tell the store's schema from the worker's code.

``floor_persist.py`` (the reference loop) keeps each record as two columns of a table with one
index, at ``synchronous=NORMAL``. The worker keeps each record as a row of some twenty columns
with the indexes its operator queries need, at ``synchronous=FULL``. This loop is
floor_persist's, line for line: receive ten, ``json.loads`` each body, one ``executemany`` and
one commit for the batch on the loop's thread, delete the ten. But the INSERT is the worker's
own statement, with the parameters the worker would bind for each record, into a file that
``migrate`` made (the worker's tables, indexes, page size and WAL), at ``synchronous=FULL``. As
in floor_persist, SQLite checkpoints the WAL by itself (every 1,000 pages), where the worker
does it from its store's thread every 150 saves.

The parameters are made before the drain starts, out of the measured window, from the bodies
compare.py sent (a JSON list it writes beside the file): during the drain a message's body only
looks up its row. So the drain costs what SQLite costs for the worker's rows, with the
least Python around it; the worker's CPU over this loop's is what its own code adds, and this
loop's over floor_persist's is what the schema and the durable commit add.

usage: floor_schema.py ENDPOINT QUEUE_URL CONCURRENCY DB_PATH BODIES_JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session

from _args import at_least
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import decode
from lambda_destinations.store import DeliveryRow
from lambda_destinations.store._sql import insert_values
from lambda_destinations.store.sqlite import SQLiteStore, _Prepared


def rows(url: str, sent: list[str], queue_url: str) -> tuple[str, dict[str, list[Any]]]:
    """The worker's INSERT, and each body sent mapped to the parameters it would bind for it."""
    from sqlalchemy.dialects import sqlite

    insert = SQLiteStore(url)._insert_invocation_only
    prepared: _Prepared | None = None
    params: dict[str, list[Any]] = {}
    for index, body in enumerate(sent):
        message = decode(body)
        # A message id of the length SQS gives; the worker's row holds its first delivery's.
        delivery = DeliveryRow(message.key, f"{index:036d}", queue_url, 1)
        row = invocation_row(message, queue_url, delivery.received_at)
        values = insert_values(row, delivery, "persist")
        if prepared is None:
            prepared = _Prepared(insert, sqlite.dialect(), values)
        params[body] = prepared.params(values)
    if prepared is None:
        raise SystemExit("no bodies given")
    return prepared.sql, params


async def migrate(url: str) -> None:
    store = SQLiteStore(url)
    async with store:
        await store.migrate()


async def main(endpoint: str, queue: str, concurrency: int, path: str, sent: list[str]) -> None:
    url = f"sqlite:///{path}"
    await migrate(url)
    sql, params = rows(url, sent, queue)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")  # the store's default; journal_mode=WAL is in the file
    session = get_session()  # credentials from the environment compare.py gives
    async with session.create_client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1"
    ) as client:
        empty = 0

        async def one() -> None:
            nonlocal empty
            while empty < 2:
                received = await client.receive_message(
                    QueueUrl=queue,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                messages = received.get("Messages", [])
                if not messages:
                    empty += 1
                    continue
                empty = 0
                batch = []
                for message in messages:
                    # Parsed as floor_persist parses it for its key; the row is found by the body.
                    json.loads(message["Body"])
                    batch.append(params[message["Body"]])
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, batch)
                db.execute("COMMIT")
                await client.delete_message_batch(
                    QueueUrl=queue,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )

        await asyncio.gather(*(one() for _ in range(concurrency)))
    db.close()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Drain QUEUE_URL into the worker's rows in DB_PATH (for bench/compare.py)."
    )
    parser.add_argument("endpoint", metavar="ENDPOINT", help="the SQS endpoint URL")
    parser.add_argument("queue", metavar="QUEUE_URL")
    parser.add_argument("concurrency", metavar="CONCURRENCY", type=at_least(1))
    parser.add_argument("path", metavar="DB_PATH", help="a SQLite file `migrate` made")
    parser.add_argument("sent", metavar="BODIES_JSON", type=Path, help="the bodies sent")
    given = parser.parse_args()
    if not given.sent.is_file():
        parser.error(f"BODIES_JSON {given.sent} is no file: name the list compare.py wrote")
    return given


if __name__ == "__main__":
    given = _arguments()
    asyncio.run(
        main(
            given.endpoint,
            given.queue,
            given.concurrency,
            given.path,
            json.loads(given.sent.read_text()),
        )
    )
