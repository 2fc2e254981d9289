"""`dev` (the embedded default: local SQS, queues, SQLite, worker) and `simulate`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import structlog

from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._app import EXIT_CONFIG, command, fail
from lambda_destinations.cli._options import hide_password, settings_options
from lambda_destinations.cli.run import print_summary, run_worker
from lambda_destinations.config import Settings
from lambda_destinations.logs import configure_logging
from lambda_destinations.simulate import SimulatedMessage, messages
from lambda_destinations.worker import Worker

log = structlog.get_logger("lambda_destinations.cli")

DEV_QUEUES = ("ld-dev-success", "ld-dev-failure")
DEV_STORE = Path(".lambda-destinations") / "dev.db"


@contextlib.contextmanager
def local_endpoint() -> Iterator[str]:
    """A moto server in this process on a free port; yields its URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        fail(
            "dev needs the local AWS endpoint: pip install 'lambda-destinations[local]'",
            EXIT_CONFIG,
        )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def create_dev_queues(aws: AwsClients, *, max_receive_count: int = 3) -> list[str]:
    """The success and failure queues, each with a DLQ and a redrive policy."""
    sqs = await aws.client("sqs")
    urls = []
    for name in DEV_QUEUES:
        dlq = await sqs.create_queue(QueueName=f"{name}-dlq")
        attributes = await sqs.get_queue_attributes(
            QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"]
        )
        policy = {
            "deadLetterTargetArn": attributes["Attributes"]["QueueArn"],
            "maxReceiveCount": str(max_receive_count),
        }
        created = await sqs.create_queue(
            QueueName=name,
            Attributes={"RedrivePolicy": json.dumps(policy), "VisibilityTimeout": "30"},
        )
        urls.append(created["QueueUrl"])
    return urls


async def send_messages(
    aws: AwsClients, batch: Sequence[SimulatedMessage], success_url: str, failure_url: str
) -> int:
    """Send with SendMessageBatch, ten at a time, to the queue Lambda would use."""
    sqs = await aws.client("sqs")
    by_queue: dict[str, list[SimulatedMessage]] = {}
    for message in batch:
        url = success_url if message.target == "success" else failure_url
        by_queue.setdefault(url, []).append(message)
    sent = 0
    for url, chosen in by_queue.items():
        for start in range(0, len(chosen), 10):
            entries: list[dict[str, Any]] = []
            for index, message in enumerate(chosen[start : start + 10]):
                entry: dict[str, Any] = {"Id": str(index), "MessageBody": message.body}
                if message.attributes:
                    entry["MessageAttributes"] = message.attributes
                entries.append(entry)
            response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
            if response.get("Failed"):
                raise click.ClickException(f"sending failed: {response['Failed'][0]}")
            sent += len(entries)
    return sent


async def live_summary(worker: Worker, every: float = 2.0) -> None:
    """A line on stderr whenever the counts changed."""
    last: dict[str, Any] | None = None
    while True:
        await asyncio.sleep(every)
        now = worker.stats.as_dict()
        if now != last:
            last = now
            click.echo(
                "  ▸ received {received} · acked {acked} · retried {retried} · "
                "quarantined {quarantined} · duplicates {duplicates}".format(**now),
                err=True,
            )


@command("dev")
@click.option(
    "--simulate",
    "simulate_n",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Send this many realistic records (a mix with a few poison messages).",
)
@click.option("--once", is_flag=True, help="Drain the queues, print a summary and exit.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulator.")
@click.option("--json", "as_json", is_flag=True, help="With --once: the summary as JSON.")
@settings_options
def dev_command(settings: Settings, simulate_n: int, once: bool, seed: int, as_json: bool) -> None:
    """Run everything locally: an SQS endpoint, queues with DLQs, SQLite and the worker.

    \b
    Examples:
      lambda-destinations dev --simulate 50          watch 50 records go through; Ctrl-C stops
      lambda-destinations dev --simulate 200 --once  drain and print counts by outcome
    """
    if settings.log_format == "auto":
        configure_logging("console", settings.log_level)  # dev is watched by a person
    for name, value in (("AWS_ACCESS_KEY_ID", "dev"), ("AWS_SECRET_ACCESS_KEY", "dev")):
        os.environ.setdefault(name, value)  # the local endpoint accepts any credentials
    store = settings.store
    if "store" not in settings.model_fields_set or store == Settings().store:
        DEV_STORE.parent.mkdir(parents=True, exist_ok=True)
        store = f"sqlite:///{DEV_STORE}"
    with local_endpoint() as endpoint:
        settings = settings.model_copy(
            update={
                "endpoint_url": endpoint,
                "region": settings.resolved_region() or "us-east-1",
                "store": store,
                "retry_base": min(settings.retry_base, 2.0),
                "retry_max": min(settings.retry_max, 10.0),
                "wait_time": min(settings.wait_time, 5),
            }
        )
        stats = asyncio.run(_dev(settings, simulate_n, seed, once))
    if once:
        print_summary(stats, as_json=as_json)


async def _dev(settings: Settings, simulate_n: int, seed: int, once: bool) -> Any:
    async with AwsClients(settings) as aws:
        success_url, failure_url = await create_dev_queues(aws)
        settings = settings.model_copy(update={"queues": [success_url, failure_url]})
        click.echo(
            "\n".join(
                [
                    "lambda-destinations dev",
                    f"  endpoint   {settings.endpoint_url}  (SQS, SNS, SES, Lambda; any keys)",
                    f"  success    {success_url}",
                    f"  failure    {failure_url}",
                    "  DLQs       the same names + '-dlq' (maxReceiveCount 3)",
                    f"  store      {hide_password(settings.store)}",
                    "  try        lambda-destinations simulate --endpoint-url "
                    f"{settings.endpoint_url} --queue {failure_url}",
                ]
            ),
            err=True,
        )
        if simulate_n:
            batch = list(messages(simulate_n, seed=seed))
            sent = await send_messages(aws, batch, success_url, failure_url)
            click.echo(f"  simulated  {sent} messages", err=True)

    summary_task: asyncio.Task[None] | None = None

    async def started(worker: Worker) -> None:
        nonlocal summary_task
        summary_task = asyncio.create_task(live_summary(worker))

    try:
        return await run_worker(settings, once=once, on_started=started)
    finally:
        if summary_task is not None:
            summary_task.cancel()
            await asyncio.gather(summary_task, return_exceptions=True)


@command("simulate")
@click.option(
    "--queue", "queue_url", required=True, help="Queue URL for every record, or successes."
)
@click.option("--failure-queue", help="Queue URL for failure records (default: --queue).")
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many messages.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulator.")
@click.option("--no-poison", is_flag=True, help="Leave out the poison messages.")
@settings_options
def simulate_command(
    settings: Settings,
    queue_url: str,
    failure_queue: str | None,
    count: int,
    seed: int,
    no_poison: bool,
) -> None:
    """Send realistic destination records to a queue (successes, failures, envelopes, poison).

    \b
    Examples:
      lambda-destinations simulate --endpoint-url http://127.0.0.1:5000 --queue URL -n 100
      lambda-destinations simulate --queue SUCCESS_URL --failure-queue FAILURE_URL
    """
    batch = list(messages(count, seed=seed, poison_every=0 if no_poison else 25))

    async def go() -> int:
        async with AwsClients(settings) as aws:
            return await send_messages(aws, batch, queue_url, failure_queue or queue_url)

    sent = asyncio.run(go())
    poison = sum(1 for m in batch if m.poison)
    click.echo(
        f"sent {sent} messages ({poison} poison) to {queue_url}"
        + (f" and {failure_queue}" if failure_queue else "")
    )
