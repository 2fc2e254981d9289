"""`dev` (the embedded default: local SQS, queues, SQLite, worker) and `simulate`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import structlog
from click.core import ParameterSource

from lambda_destinations._text import printable
from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._app import EXIT_CONFIG, EXIT_USAGE, command, fail
from lambda_destinations.cli._common import aws_errors
from lambda_destinations.cli._numbers import FiniteFloatRange, Whole
from lambda_destinations.cli._options import hide_options, hide_password, settings_options
from lambda_destinations.cli._table import cell, plural
from lambda_destinations.cli.console import serve_alongside
from lambda_destinations.cli.run import (
    end_job,
    print_summary,
    run_or_exit,
    run_worker,
    summary_line,
)
from lambda_destinations.config import DEV_CONFIG, DEV_STORE, RouteConfig, Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.logs import configure_logging

# The local endpoint, the simulator, the worker and the records' schemas (schemas.s3's bucket
# layout) are imported by the commands that run them, so that `dev --help` and
# `simulate --help` load none of them.
if TYPE_CHECKING:
    from lambda_destinations.dev_endpoint import FunctionSimulation
    from lambda_destinations.simulate import SimulatedMessage
    from lambda_destinations.worker import Stats, Worker

log = structlog.get_logger("lambda_destinations.cli")

DEV_QUEUES = ("ld-dev-success", "ld-dev-failure")
# A bucket that is an on-failure destination too: Lambda writes records there, and the
# bucket's notification brings each to the failure queue. dev --simulate writes every
# DEV_S3_EVERY-th failure there (1 in 7: 14%), so the worker is seen reading them.
DEV_BUCKET = "ld-dev-failures"
DEV_S3_EVERY = 7
# Held (flock) by the dev that runs in this folder; it holds that dev's pid.
DEV_LOCK = DEV_CONFIG.parent / "dev.lock"


@contextlib.contextmanager
def dev_folder() -> Iterator[None]:
    """Make dev's folder and hold its lock while dev runs, or exit 3 in one line.

    A second dev in the same folder would write its own endpoint into dev.toml, leaving the
    folder's commands pointing at a dead endpoint once it exits, and share dev.db with the
    first. The lock is an flock: the system lets it go when its holder dies, so a dev that
    crashed never blocks the next.
    """
    folder = DEV_CONFIG.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(DEV_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except (FileExistsError, NotADirectoryError):
        fail(f"{folder} is not a folder: dev keeps its settings there; move it away", EXIT_CONFIG)
    except OSError as exc:
        # Made before (by another user, or its mode changed): the folder dev runs in is not
        # what stops it, and running it elsewhere would leave this one's records behind.
        fix = (
            f"make {folder} writable, or move it away and run dev again"
            if folder.is_dir()
            else "run dev in a folder you can write to"
        )
        fail(
            f"dev cannot write its settings to {folder.absolute()} ({exc.strerror}): {fix}",
            EXIT_CONFIG,
        )
    with os.fdopen(descriptor, "r+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock.read().strip()
            pid = f" (pid {holder})" if holder.isdigit() else ""
            fail(
                f"another dev{pid} runs in this folder, with its settings in {DEV_CONFIG}: "
                "stop it, or run this dev in another folder",
                EXIT_CONFIG,
            )
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        if DEV_CONFIG.exists() and not DEV_CONFIG.is_file():  # a folder, say
            fail(
                f"{DEV_CONFIG} is not a file: dev writes its settings there; move it away",
                EXIT_CONFIG,
            )
        yield


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
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


async def create_dev_queues(aws: AwsClients, *, max_receive_count: int = 5) -> list[str]:
    """The success and failure queues, each with a DLQ and a redrive policy."""
    sqs = await aws.client("sqs")
    urls = []
    for name in DEV_QUEUES:
        # The DLQ keeps messages longer than the queue (14 days, SQS's most): a message's age
        # counts from its first enqueue.
        dlq = await sqs.create_queue(
            QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
        )
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


async def create_dev_bucket(aws: AwsClients, failure_arn: str) -> None:
    """dev's bucket, whose notification tells the failure queue of every object created under
    ``aws/lambda/``, where Lambda writes its records.

    On AWS the queue's policy must also let the S3 service send to it from this bucket (the
    README's "Records in S3: a bucket as the on-failure destination" shows it); moto checks no
    queue policy, so dev sets none. Saving the configuration sends S3's test event to the
    queue, as S3 does: the worker acknowledges it.
    """
    from lambda_destinations.schemas.s3 import notification_configuration

    s3 = await aws.client("s3")
    where: dict[str, Any] = {}
    if aws.region not in (None, "us-east-1"):  # S3 refuses us-east-1 as a constraint
        where["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    await s3.create_bucket(Bucket=DEV_BUCKET, **where)
    await s3.put_bucket_notification_configuration(
        Bucket=DEV_BUCKET, NotificationConfiguration=notification_configuration(failure_arn)
    )


async def write_objects(aws: AwsClients, batch: Sequence[SimulatedMessage], bucket: str) -> int:
    """Write the records that go to a bucket (``s3_key``) with PutObject, as Lambda does."""
    s3 = await aws.client("s3")
    written = 0
    for message in batch:
        if message.s3_key is not None:
            await s3.put_object(
                Bucket=bucket,
                Key=message.s3_key,
                Body=message.body.encode(),
                ContentType="application/json",
            )
            written += 1
    return written


async def send_messages(
    aws: AwsClients, batch: Sequence[SimulatedMessage], success_url: str, failure_url: str
) -> int:
    """Send with SendMessageBatch, ten at a time, to the queue Lambda would use (not the
    records that go to a bucket: :func:`write_objects`)."""
    sqs = await aws.client("sqs")
    by_queue: dict[str, list[SimulatedMessage]] = {}
    for message in batch:
        if message.s3_key is not None:
            continue
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


async def live_summary(
    stats: Stats, every: float = 2.0, seed: int = 7, *, final: bool = True
) -> None:
    """A line on stderr whenever the counts it shows changed (not the SQS calls of an idle
    worker's receives, which change every few seconds); the first duplicates, explained.
    Cancelled once the worker stopped, it prints the final counts (``final``; ``--once`` prints
    its summary on stdout instead) when they changed since its last line: the last line a
    person sees is what the worker did, not the counts of up to ``every`` seconds before
    (messages still in flight, the ones released at the stop)."""
    last = ""
    explained = False
    try:
        while True:
            await asyncio.sleep(every)
            line = summary_line(stats.as_dict())
            if line != last:
                last = line
                click.echo(f"  ▸ {line}", err=True)
            if stats.duplicates and not explained:
                explained = True
                click.echo(duplicates_note(seed), err=True)
    except asyncio.CancelledError:
        if final and (line := summary_line(stats.as_dict())) != last:
            click.echo(f"  ▸ {line}", err=True)
        raise


def duplicates_note(seed: int) -> str:
    """Why dev counts duplicates: most often, a second ``dev --simulate`` in the same folder,
    whose records the store already has (the simulator sends the same ones for a seed)."""
    return (
        "  duplicates are records this folder's store already had: dev --simulate sends the "
        f"same records for the same --seed each time; --seed {seed + 1} sends new ones"
    )


def _own_alert_sent(event: Mapping[str, Any]) -> bool:
    """The worker's "webhook sent" line for dev's own alert channel: dev prints the alert
    itself (``▸ alert``), so that line would only repeat it."""
    return event.get("event") == "webhook sent" and event.get("handler") == DEV_ALERTS


DEV_ROUTES = (
    RouteConfig(condition="success", handlers=("persist", "replay-outcome")),
    RouteConfig(condition="failure", handlers=("persist", "replay-outcome", "dev-alerts")),
)
DEV_ALERTS = "dev-alerts"


def dev_alerts(endpoint_url: str) -> dict[str, Any]:
    """dev's alert channel: the webhook handler, Slack-shaped, posting to dev's own endpoint,
    which prints each alert. Storm rules apply: the first 3 per function and error type a
    minute, then a digest."""
    from lambda_destinations.dev_endpoint import ALERTS_PATH

    return {
        "type": "webhook",
        "preset": "slack",
        "url": endpoint_url + ALERTS_PATH,
        "message": "{summary:.160} [{request_id}]",
        "window": "1m",
        "send_first": 3,
    }


def _toml_value(value: Any) -> str:
    """A TOML value (strings, numbers, booleans, arrays, inline tables): enough for dev.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


def write_dev_config(settings: Settings, path: Path = DEV_CONFIG) -> None:
    """Write the settings of this dev run where every command in the folder finds them."""
    values: dict[str, Any] = {
        "endpoint_url": settings.endpoint_url,
        "region": settings.resolved_region(),
        "store": settings.store,
        "queues": settings.queues,
        "retry_base": settings.retry_base,
        "retry_max": settings.retry_max,
        "wait_time": settings.wait_time,
        "ops_port": settings.ops_port,
        "routes": [route.model_dump(exclude_defaults=True) for route in settings.routes],
        "handlers": settings.handlers,
    }
    lines = [
        "# Written by `lambda-destinations dev`: the endpoint, queues and store it runs.",
        "# Every command run in this folder reads this file, unless --config or",
        "# LAMBDA_DESTINATIONS_CONFIG names another. The endpoint answers while dev runs.",
        *(f"{key} = {_toml_value(value)}" for key, value in values.items()),
    ]
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Owner-only, whatever the umask: the store's URL in it may hold a password.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        path.chmod(0o600)
    except OSError as exc:
        raise ConfigError(
            f"dev cannot write its settings to {path} ({exc.strerror}): free space or "
            "permissions there, or run dev in another folder"
        ) from None


def _dev_settings(settings: Settings) -> Settings:
    """dev's own store and routes where the user configured none; fast retries."""
    store = settings.store
    if store == Settings.model_fields["store"].default:
        DEV_STORE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = f"sqlite:///{DEV_STORE}"
    routes = settings.routes
    if routes == [RouteConfig(handlers=("persist",))]:
        routes = list(DEV_ROUTES)  # link the outcomes of replays: recovered or failed
    return settings.model_copy(
        update={
            "region": settings.resolved_region() or "us-east-1",
            "store": store,
            "routes": routes,
            # Short, and yet a minute from the first receive to the last (doctor's warning).
            "retry_base": min(settings.retry_base, 5.0),
            "retry_max": min(settings.retry_max, 30.0),
            "wait_time": min(settings.wait_time, 5),
        }
    )


_seed_option = click.option(
    "--seed", type=Whole(), default=7, show_default=True, help="Seed of the simulator."
)


# dev's SQS (moto) counts its queue's messages on each send: sending grows with the square of
# the count (1,000 records: 6 s; 3,000: about a minute, with nothing on the screen meanwhile;
# 100,000 would take hours). More is for `simulate` against LocalStack or AWS.
DEV_SIMULATE_MAX = 2_000


@command("dev")
@click.option(
    "--simulate",
    "simulate_n",
    type=Whole(min=0, max=DEV_SIMULATE_MAX),
    default=0,
    show_default=True,
    help="Send this many realistic records (a mix with a few poison messages); at most "
    f"{DEV_SIMULATE_MAX:,}, as dev's local SQS slows with each message queued (for more, "
    "`simulate` against LocalStack).",
)
@click.option("--once", is_flag=True, help="Drain the queues, print a summary and exit.")
@_seed_option
@click.option(
    "--success-rate",
    type=FiniteFloatRange(0, 1),
    default=0.6,
    show_default=True,
    help="Chance that an invocation of a simulated function (a replay) succeeds.",
)
@click.option(
    "--port",
    type=Whole(0, 65535),
    default=0,
    help="Port of the local endpoint (default: a free one).",
)
@click.option(
    "--console-port",
    type=Whole(0, 65535),
    default=8000,
    show_default=True,
    help="Port of the browser console on 127.0.0.1 (a free one if taken); not with --once.",
)
@click.option("--json", "as_json", is_flag=True, help="With --once: the summary as JSON.")
@settings_options
def dev_command(
    settings: Settings,
    simulate_n: int,
    once: bool,
    seed: int,
    success_rate: float,
    port: int,
    console_port: int,
    as_json: bool,
) -> None:
    """Run everything locally: an AWS endpoint, simulated functions, queues, SQLite, the worker.

    dev writes its endpoint, queues and store to .lambda-destinations/dev.toml: every other
    command run in the same folder uses them (failures, replay, dlq, doctor ...).

    \b
    Examples:
      lambda-destinations dev --simulate 50          watch 50 records go through; Ctrl-C stops
      lambda-destinations dev --simulate 200 --once  drain and print counts by outcome
      lambda-destinations dev --success-rate 0.2     replays mostly fail again
    """
    _check_once_options(once, as_json)
    _refuse_dev_own()
    if settings.log_format == "auto":
        # dev is watched by a person
        configure_logging("console", settings.log_level, hide=_own_alert_sent)
    for name, value in (("AWS_ACCESS_KEY_ID", "dev"), ("AWS_SECRET_ACCESS_KEY", "dev")):
        os.environ.setdefault(name, value)  # the local endpoint accepts any credentials
    from lambda_destinations.dev_endpoint import FunctionSimulation

    with dev_folder():
        settings = _dev_settings(settings)
        simulation = FunctionSimulation(
            success_rate=success_rate, seed=seed, region=settings.resolved_region() or "us-east-1"
        )
        with moto_server() as moto_url:
            stats = run_or_exit(
                _dev(
                    settings, moto_url, simulation, port, simulate_n, None if once else console_port
                ),
                settings.event_loop,
            )
    if once:
        print_summary(stats, as_json=as_json)
        if stats.duplicates:
            click.echo(duplicates_note(seed), err=True)
        end_job(stats)


def _check_once_options(once: bool, as_json: bool) -> None:
    """Refuse (exit 2) the options that mean nothing with ``--once``, or without it: both were
    dropped without a word."""
    if as_json and not once:
        # A running dev prints no summary: a person watches it, and stops it with Ctrl-C.
        fail(
            "--json goes with --once, whose summary it prints as JSON: add --once, or leave "
            "--json out (--log-format json: the logs as JSON)",
            EXIT_USAGE,
        )
    source = click.get_current_context().get_parameter_source("console_port")
    if once and source is not ParameterSource.DEFAULT:
        fail(
            "--console-port goes without --once: dev --once exits once the queues are drained, "
            "and serves no console; leave one of them out (`lambda-destinations console` in "
            "this folder serves what it stored)",
            EXIT_USAGE,
        )


def _refuse_dev_own() -> None:
    """Refuse (exit 2) --endpoint-url and --queues: dev runs its own endpoint and queues, and
    both were dropped without a word. (Hidden from dev's --help; the variables, which may be
    set for other commands, are left to them.)"""
    ctx = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("endpoint_url", "queues")
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    if given:
        fail(
            f"{' and '.join(given)}: dev runs its own AWS endpoint and queues, and writes them to "
            f"{DEV_CONFIG}; leave {'it' if len(given) == 1 else 'them'} out (`lambda-destinations "
            "run` consumes the queues of an endpoint you give)",
            EXIT_USAGE,
        )


async def _dev(
    settings: Settings,
    moto_url: str,
    simulation: FunctionSimulation,
    port: int,
    simulate_n: int,
    console_port: int | None,
) -> Any:
    """``console_port`` None: drain once and return, without the console."""
    from lambda_destinations.dev_endpoint import Destinations, DevEndpoint, register_functions
    from lambda_destinations.simulate import messages

    async with DevEndpoint(moto_url, simulation, port=port, on_alert=_show_alert) as endpoint:
        settings = settings.model_copy(update={"endpoint_url": endpoint.url})
        if any(DEV_ALERTS in route.handlers for route in settings.routes):
            handlers = {**settings.handlers, DEV_ALERTS: dev_alerts(endpoint.url)}
            settings = settings.model_copy(update={"handlers": handlers})
        async with AwsClients(settings) as aws:
            success_url, failure_url = await create_dev_queues(aws)
            arns = [await _queue_arn(aws, url) for url in (success_url, failure_url)]
            await register_functions(moto_url, simulation, *arns)
            await create_dev_bucket(aws, arns[1])
            endpoint.deliver_to(Destinations(success_url, failure_url))
            settings = settings.model_copy(update={"queues": [success_url, failure_url]})
            _banner(settings, simulation)
            if simulate_n:
                batch = list(messages(simulate_n, seed=_seed(simulation), s3_every=DEV_S3_EVERY))
                await endpoint.write_logs(m.record for m in batch if m.record is not None)
                sent = await send_messages(aws, batch, success_url, failure_url)
                written = await write_objects(aws, batch, DEV_BUCKET)
                click.echo(_simulated_line(sent, written), err=True)
        return await _run_dev_worker(settings, console_port, _seed(simulation))


def _simulated_line(sent: int, written: int) -> str:
    """What dev --simulate sent: every message the worker will receive, the records written to
    the bucket among them (each arrives as its notification)."""
    from lambda_destinations.schemas.s3 import LAMBDA_PREFIX

    line = f"  simulated  {plural(sent + written, 'message')}"
    if written:
        line += (
            f" ({plural(written, 'failure record')} written to s3://{DEV_BUCKET}/{LAMBDA_PREFIX}… "
            "as Lambda does; the bucket's notification brings each to the failure queue)"
        )
    return line


def _show_alert(text: str) -> None:
    # The alert quotes the record's error message and request id: on one line, as a table's
    # cell (a line break in them would start a line that reads as dev's or the log's own), its
    # controls and bidi controls escaped (a BEL, U+202E), as wherever stored text is shown;
    # stderr takes no lone surrogate either.
    click.echo(printable(f"  ▸ alert     {cell(text)}"), err=True)


async def _queue_arn(aws: AwsClients, url: str) -> str:
    sqs = await aws.client("sqs")
    answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(answer["Attributes"]["QueueArn"])


def _banner(settings: Settings, simulation: FunctionSimulation) -> None:
    from lambda_destinations.schemas.s3 import LAMBDA_PREFIX

    success_url, failure_url = settings.queues
    click.echo(
        "\n".join(
            [
                "lambda-destinations dev",
                f"  endpoint   {settings.endpoint_url}  (SQS, SNS, SES, S3, Lambda; any keys)",
                f"  functions  {', '.join(simulation.functions)} (simulated: each invocation "
                f"succeeds {simulation.success_rate:.0%} of the time and sends its record)",
                f"  success    {success_url}",
                f"  failure    {failure_url}",
                "  DLQs       the same names + '-dlq' (maxReceiveCount 5)",
                f"  bucket     {DEV_BUCKET}  (a failure destination too: its notification of each "
                f"record under {LAMBDA_PREFIX} goes to the failure queue)",
                f"  store      {hide_password(settings.store)}",
                f"  settings   {DEV_CONFIG} (every command in this folder uses them)",
                "  try        lambda-destinations failures list --since 2h",
            ]
        ),
        err=True,
    )


def _seed(simulation: FunctionSimulation) -> int:
    """The simulator's seed: ``--seed``'s, 0 included."""
    return 7 if simulation.seed is None else simulation.seed


async def _run_dev_worker(settings: Settings, console_port: int | None, seed: int) -> Any:
    tasks: list[asyncio.Task[None]] = []

    async def started(worker: Worker) -> None:
        tasks.append(
            asyncio.create_task(
                live_summary(worker.stats, seed=seed, final=console_port is not None)
            )
        )
        if console_port is not None:
            tasks.append(asyncio.create_task(serve_alongside(settings, console_port)))

    try:
        return await run_worker(
            settings,
            once=console_port is None,
            on_started=started,
            ops_host="127.0.0.1",
            local=True,
            # Written once the ops port is known: another than 8080 when a dev in another
            # folder has it, and `healthcheck` here must ask this one.
            on_listening=write_dev_config,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@command("simulate")
@click.option(
    "--queue", "queue_url", required=True, help="Queue URL for every record, or successes."
)
@click.option("--failure-queue", help="Queue URL for failure records (default: --queue).")
@click.option(
    "-n",
    "--count",
    "count",
    type=Whole(min=1, max=1_000_000),
    default=50,
    show_default=True,
    help="How many messages.",
)
@_seed_option
@click.option("--no-poison", is_flag=True, help="Leave out the poison messages.")
@click.option(
    "--bucket",
    help=f"Write every {DEV_S3_EVERY}th failure record to this bucket under aws/lambda/, as "
    "Lambda writes to an S3 on-failure destination, instead of the failure queue (the "
    "bucket's notification brings it there).",
)
@settings_options
def simulate_command(
    settings: Settings,
    queue_url: str,
    failure_queue: str | None,
    count: int,
    seed: int,
    no_poison: bool,
    bucket: str | None,
) -> None:
    """Send realistic destination records to a queue (successes, failures, envelopes, poison).

    \b
    Examples:
      lambda-destinations simulate --endpoint-url http://127.0.0.1:5000 --queue URL -n 100
      lambda-destinations simulate --queue SUCCESS_URL --failure-queue FAILURE_URL
      lambda-destinations simulate --queue URL --bucket my-failures
    """
    from lambda_destinations.operations.dlq import resolve_queue
    from lambda_destinations.simulate import messages

    if bucket is not None:
        _check_bucket_name(bucket)
    batch = list(
        messages(
            count,
            seed=seed,
            poison_every=0 if no_poison else 25,
            s3_every=DEV_S3_EVERY if bucket else 0,
        )
    )

    async def go() -> tuple[int, int]:
        async with AwsClients(settings) as aws:
            sqs = await aws.client("sqs")
            # Named or not, a queue that does not exist is one line, before anything is sent.
            success = await resolve_queue(sqs, queue_url)
            # An empty name given is refused as --queue's is, not taken as none given.
            failure = success
            if failure_queue is not None:
                failure = await resolve_queue(sqs, failure_queue)
            written = await _write_to(aws, batch, bucket) if bucket is not None else 0
            return await send_messages(aws, batch, success.url, failure.url), written

    with aws_errors(settings):
        sent, written = asyncio.run(go())
    poison = sum(1 for m in batch if m.poison)
    click.echo(
        f"sent {plural(sent, 'message')} ({poison} poison) to {queue_url}"
        + (f" and {failure_queue}" if failure_queue else "")
        + (f"; wrote {plural(written, 'failure record')} to s3://{bucket}/" if bucket else "")
    )


async def _write_to(aws: AwsClients, batch: Sequence[SimulatedMessage], bucket: str) -> int:
    """:func:`write_objects` for ``simulate --bucket``: a bucket that does not exist is one
    line and exit 2, before any message is sent, whether or not a record goes to it."""
    from lambda_destinations.retrying import error_code

    s3 = await aws.client("s3")
    try:
        # HeadBucket answers a missing bucket with a bare 404, and one that may not be listed
        # (no s3:ListBucket) with a 403: PutObject may still be allowed there.
        await s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchBucket"):
            _no_bucket(bucket)
        if error_code(exc) != "403":
            raise
    try:
        return await write_objects(aws, batch, bucket)
    except Exception as exc:
        if error_code(exc) != "NoSuchBucket":
            raise
        _no_bucket(bucket)


def _check_bucket_name(bucket: str) -> None:
    """A --bucket no S3 call can name is a usage error, before anything is sent (botocore
    refused it with a bare "Parameter validation failed:")."""
    from lambda_destinations.redact import echoed
    from lambda_destinations.schemas.s3 import BUCKET_NAME

    if not BUCKET_NAME.fullmatch(bucket):
        fail(
            f"--bucket: {echoed(bucket)!r} cannot be an S3 bucket's name: give the bucket's "
            "name as `aws s3 ls` lists it (lowercase letters, digits, '.' and '-')",
            EXIT_USAGE,
        )


def _no_bucket(bucket: str) -> NoReturn:
    from lambda_destinations.redact import echoed

    fail(
        f"bucket {echoed(bucket)!r} does not exist: check the name (and the region), or "
        "create it with its notification to the failure queue (README: Records in S3)",
        EXIT_USAGE,
    )


# simulate sends to --queue / --failure-queue; the worker's polled queues mean nothing here.
hide_options(simulate_command, "queues")
# dev runs its own endpoint and queues (_refuse_dev_own).
hide_options(dev_command, "endpoint_url", "queues")
