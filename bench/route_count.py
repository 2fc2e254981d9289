"""The do-nothing route's own work, in process: N messages through Dispatcher.process to the
noop handler and the delete batcher (its send answered at once), no network, no store.

    PYTHONHASHSEED=0 valgrind --tool=callgrind python bench/route_count.py 200
    PYTHONHASHSEED=0 valgrind --tool=callgrind python bench/route_count.py 1200

The difference of the two totals over 1,000 is a message's instructions, which the machine's
load does not stretch as it does drain_count.py's (bench/MEASUREMENTS.md, 7 December: "the
route's own instructions").
"""

import asyncio
import sys
import time
from typing import Any

import uvloop

from compare import bodies
from compare_noop import noop
from lambda_destinations.config import load_settings
from lambda_destinations.handlers.routing import Router
from lambda_destinations.worker.batching import BatchSender
from lambda_destinations.worker.dispatch import Dispatcher, InFlight, Stats
from lambda_destinations.worker.metrics import Metrics
from lambda_destinations.worker.queues import QueueInfo

URL = "http://127.0.0.1:4566/000000000000/route"


async def send(url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Failed": []}


async def main(n: int) -> None:
    settings = load_settings(queues=[URL], region="us-east-1", store="sqlite:///x.db")
    queue = QueueInfo(URL, "route", None, 60, False, None, None)
    metrics = Metrics()
    metrics.zero(["route"], ["noop"])
    acks = BatchSender("delete", send)
    dispatcher = Dispatcher(
        settings=settings,
        store=None,  # type: ignore[arg-type]  # the noop route calls no store
        router=Router([], (noop,)),
        aws=None,  # type: ignore[arg-type]
        sqs=None,
        acks=acks,
        visibility=BatchSender("visibility", send),
        owner="w",
        stats=Stats(),
        queues=[queue],
        metrics=metrics,
    )
    texts = bodies(1200, 7)[:n]  # the same work in every run: it cancels out
    loop = asyncio.get_running_loop()
    for start in range(0, n, 10):  # as receives of ten
        batch = []
        now = time.time()
        for i, body in enumerate(texts[start : start + 10], start):
            message = {
                "MessageId": f"m{i}",
                "ReceiptHandle": f"r{i}",
                "Body": body,
                "Attributes": {
                    "SentTimestamp": str(int(now * 1000) - 5000),
                    "ApproximateReceiveCount": "1",
                },
            }
            metrics.observe_received(message, now)
            item = InFlight(queue, message, 60, loop.time() + 30, received_at=loop.time())
            batch.append(asyncio.create_task(dispatcher.process(item)))
        await asyncio.gather(*batch)
    await acks.flush(loop.time() + 5)
    assert dispatcher.stats.outcomes["ack"] == n, dispatcher.stats.outcomes


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
