"""The SQLite save path alone, for counting its instructions: decode M simulated records, then
save the first N of them as the worker does (the persist handler's row, ``save_invocation``,
the group commit, the commit in the store's thread), CONCURRENCY saves in flight.

Instruction counts do not move with the machine's load, which wall-clock CPU on a shared
machine does by more than the changes measured here. Run it twice under callgrind with the
same M and two values of N; the difference, divided by the difference in N, is one save's
instructions, every thread included (start-up, decoding and closing cancel out):

    for n in 200 1200; do
        PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=save.$n \\
            python bench/save_count.py --n $n --concurrency 32
    done
    # then: (total of save.1200 - total of save.200) / 1000, the totals from callgrind_annotate

``--concurrency`` sets how many saves the group commit gathers into one transaction: the
worker's batches follow its receives (about ten) and its handler slots (32 by default).
Without valgrind it prints the process CPU of the saves.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _args import at_least
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import DecodedMessage, decode
from lambda_destinations.simulate import messages
from lambda_destinations.store import DeliveryRow, InvocationFilter
from lambda_destinations.store.sqlite import SQLiteStore

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-results"


def records(m: int, seed: int) -> list[DecodedMessage]:
    """``m`` decoded simulated records of distinct keys (the worker's mix of kinds)."""
    keys: set[str] = set()
    decoded: list[DecodedMessage] = []
    for message in messages(m * 2 + 50, seed=seed, poison_every=0):
        if message.attributes or message.key is None or message.key in keys:
            continue
        keys.add(message.key)
        decoded.append(decode(message.body))
        if len(decoded) == m:
            break
    return decoded


async def save_all(store: SQLiteStore, decoded: list[DecodedMessage], concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def save(index: int, message: DecodedMessage) -> None:
        async with slots:
            delivery = DeliveryRow(
                key=message.key, message_id=f"m-{index}", queue=QUEUE, receive_count=1
            )
            row = invocation_row(message, QUEUE, delivery.received_at)
            await store.save_invocation(row, delivery, complete_handler="persist")

    await asyncio.gather(*(save(i, message) for i, message in enumerate(decoded)))


async def main(args: argparse.Namespace) -> None:
    decoded = records(args.m, args.seed)
    with tempfile.TemporaryDirectory(prefix="save-count-") as folder:
        store = SQLiteStore(f"sqlite:///{Path(folder) / 'store.db'}{args.query}")
        async with store:
            await store.migrate()
            started = time.process_time()
            await save_all(store, decoded[: args.n], args.concurrency)
            cpu = time.process_time() - started
            stored = await store.count_invocations(InvocationFilter(failed_only=False))
    if stored != args.n:
        raise SystemExit(f"stored {stored} records of {args.n}")
    print(f"saved {args.n} records, {cpu / args.n * 1e6:.1f} µs of process CPU a save")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=at_least(1), default=1000, help="records saved")
    parser.add_argument(
        "--m", type=at_least(1), default=2000, help="records decoded (keep it fixed)"
    )
    parser.add_argument("--concurrency", type=at_least(1), default=32, help="saves in flight")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--query", default="", help="appended to the store URL, e.g. ?synchronous=normal"
    )
    args = parser.parse_args()
    if args.n > args.m:
        parser.error(f"--n {args.n} is more than --m {args.m}: raise --m")
    return args


if __name__ == "__main__":
    asyncio.run(main(_arguments()))
