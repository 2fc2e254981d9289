"""The worker moves its start-up heap out of the garbage collector's way, once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# A fresh interpreter: this test process has started workers already.
SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    from lambda_destinations.config import load_settings
    from lambda_destinations.worker import Worker

    async def main():
        settings = load_settings(
            queues=[sys.argv[1]], endpoint_url=sys.argv[2], store=sys.argv[3],
            region="us-east-1", wait_time=1,
        )
        counts = [gc.get_freeze_count()]
        for _ in range(2):
            async with Worker(settings) as worker:
                counts.append(gc.get_freeze_count())
                await worker.run(once=True)
        garbage = []
        for _ in range(100):
            cycle = [None]
            cycle[0] = cycle
            garbage.append(cycle)
        del garbage, cycle
        counts.append(gc.collect())  # the collector still collects what came after
        print(json.dumps(counts))

    asyncio.run(main())
    """
)


def test_the_first_worker_start_freezes_the_start_up_heap_and_later_garbage_is_collected(
    make_queue, endpoint_url, sqlite_url
) -> None:
    url, _ = make_queue("heap")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, endpoint_url, sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    before, first, second, collected = json.loads(done.stdout.strip().splitlines()[-1])
    # then: nothing was frozen before; the first start froze the modules, clients and store
    assert before == 0
    assert first > 50_000
    # and: a second worker in the same process freezes nothing more (the count only falls, as
    # the first worker's frozen objects are freed by reference counting)
    assert second <= first
    # and: cycles made after the freeze are still found by the collector
    assert collected >= 100
