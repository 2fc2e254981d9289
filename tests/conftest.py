"""Shared fixtures: a real moto server over HTTP, AWS clients bound to it, PostgreSQL databases."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambda_destinations.config import Settings, load_settings

EVENTS = Path(__file__).parent / "events"
REGION = "us-east-1"
PG_ADMIN_URL = os.environ.get(
    "LAMBDA_DESTINATIONS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The PostgreSQL URL tests make their databases from (a module importing ``conftest``
    may get another directory's conftest, so tests outside this file take it from here)."""
    return PG_ADMIN_URL


@pytest.fixture(scope="session", autouse=True)
def _aws_environment() -> Iterator[None]:
    """Fake credentials so no test can ever reach a real AWS account."""
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def _a_folder_of_their_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests run in an empty folder: every command and ``load_settings`` read
    ``.lambda-destinations/dev.toml`` from the folder they run in, and the checkout holds one
    once the README's ``dev`` ran there (its routes, retry settings and endpoint became the
    tests' own, and ``make check`` failed there)."""
    before = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(scope="session", autouse=True)
def _no_ops_server() -> Iterator[None]:
    """Workers the tests start (in process or as commands) serve no ops port unless a test
    asks for one: many run at once and would compete for the default 8080."""
    saved = os.environ.get("LAMBDA_DESTINATIONS_OPS_PORT")
    os.environ.setdefault("LAMBDA_DESTINATIONS_OPS_PORT", "0")
    yield
    if saved is None:
        os.environ.pop("LAMBDA_DESTINATIONS_OPS_PORT", None)


@pytest.fixture(autouse=True)
def _structlog_per_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands run in process configure structlog for a whole process, caching loggers on
    first use; a cached logger bypasses ``capture_logs``, so which tests ran before one on the
    same pytest worker decided what it could see. Tests never cache, and start from defaults."""
    import structlog

    configure = structlog.configure

    def configure_without_cache(**settings: Any) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})

    monkeypatch.setattr(structlog, "configure", configure_without_cache)
    # a command's last line in JSON only as long as the test's own configuration says so
    monkeypatch.setattr("lambda_destinations.logs._final_lines_json", False)
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on a free port, shared by the session; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def endpoint_url(moto_server: str) -> str:
    return moto_server


@pytest.fixture
def sqs(endpoint_url: str):  # type: ignore[no-untyped-def]
    """A synchronous boto3 SQS client on the moto server, for arranging and asserting."""
    return boto3.client("sqs", region_name=REGION, endpoint_url=endpoint_url)


@pytest.fixture
def make_queue(sqs):  # type: ignore[no-untyped-def]
    """Create uniquely named queues (optionally with a DLQ); deleted after the test."""
    created: list[str] = []

    def make(
        name: str = "q",
        *,
        dlq: bool = True,
        max_receive_count: int = 3,
        visibility_timeout: int = 30,
    ) -> tuple[str, str | None]:
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        dlq_url = None
        attributes = {"VisibilityTimeout": str(visibility_timeout)}
        if dlq:
            dlq_url = sqs.create_queue(QueueName=f"{unique}-dlq")["QueueUrl"]
            created.append(dlq_url)
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            import json

            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            )
        url = sqs.create_queue(QueueName=unique, Attributes=attributes)["QueueUrl"]
        created.append(url)
        return url, dlq_url

    try:
        yield make
    finally:
        for url in created:
            with contextlib.suppress(Exception):
                sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def s3(endpoint_url: str) -> Any:
    """A synchronous boto3 S3 client on the moto server."""
    return boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url)


@pytest.fixture
def bucket_to(s3: Any, sqs: Any) -> Any:
    """A bucket whose ObjectCreated notifications under aws/lambda/ go to a queue.

    The buckets stay (each test's name is its own): moto keeps every object it ever made, and
    its state dump (/moto-api/data.json, which the SMS and email tests read) looks up an
    object's bucket when it reads the object's status the second time, answering 500 for the
    rest of the server's life once that bucket is deleted."""

    def make(queue_url: str) -> str:
        name = f"records-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=name)
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        rule = {"FilterRules": [{"Name": "prefix", "Value": "aws/lambda/"}]}
        s3.put_bucket_notification_configuration(
            Bucket=name,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": rule},
                    }
                ]
            },
        )
        return name

    return make


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def hold_write_lock() -> Iterator[Callable[[Path], sqlite3.Connection]]:
    """Take a SQLite file's write lock as another process would; ``execute("ROLLBACK")`` on
    the connection returned lets it go, and it goes at the end of the test anyway.

    Beside a running worker, take it off the event loop (``await asyncio.to_thread(hold,
    path)``): the worker's own write transactions span several awaits, so waiting for the lock
    on the loop can wait on the worker itself, until sqlite3's 5 s timeout says it is locked.
    """
    holders: list[sqlite3.Connection] = []

    def hold(path: Path) -> sqlite3.Connection:
        # Any thread may use it: taken in a thread, let go on the loop.
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holders.append(holder)
        holder.execute("BEGIN IMMEDIATE")
        return holder

    yield hold
    for holder in holders:
        holder.close()


@pytest.fixture
def settings_for(endpoint_url: str, sqlite_url: str) -> Callable[..., Settings]:
    """Settings for queues on the moto server, fast retries, the test's SQLite file."""

    def make(*queues: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queues": list(queues),
            "endpoint_url": endpoint_url,
            "region": "us-east-1",
            "store": sqlite_url,
            "wait_time": 1,
            "concurrency": 16,
            "retry_base": 1.0,
            "retry_max": 4.0,
            "handler_retry_max_delay": 1.0,
            "shutdown_grace": 5.0,
        }
        values.update(overrides)
        # Queue depths are sampled once a second at the most (the setting's floor spares SQS);
        # tests sample faster, to see a change soon, and set it past the check.
        interval = values.pop("queue_metrics_interval", None)
        settings = load_settings(**values)
        if interval is None:
            return settings
        return settings.model_copy(update={"queue_metrics_interval": interval})

    return make


def _postgres_unavailable_reason() -> str | None:
    try:
        import asyncio

        import asyncpg

        async def probe() -> None:
            conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
            await conn.close()

        asyncio.run(probe())
    except Exception as exc:
        return f"no PostgreSQL server reachable at {PG_ADMIN_URL} ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def postgres_available() -> str | None:
    reason = _postgres_unavailable_reason()
    if reason and os.environ.get("LAMBDA_DESTINATIONS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}; LAMBDA_DESTINATIONS_REQUIRE_POSTGRES=1 forbids skipping")
    return reason


@pytest.fixture
async def postgres_url(postgres_available: str | None) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    if postgres_available:
        pytest.skip(postgres_available)
    import asyncpg

    name = f"ld_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def postgres_reader(postgres_url: str) -> AsyncIterator[tuple[str, str]]:
    """``postgres_url`` migrated, and a user of it who may read every table and write none:
    (that user's name, the store URL as that user). The user goes at the end of the test."""
    from urllib.parse import urlsplit

    import asyncpg

    from lambda_destinations.store import Store

    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    reader = f"ld_reader_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE ROLE "{reader}" LOGIN')
        await admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{reader}"')
        parts = urlsplit(postgres_url)
        netloc = f"{reader}@{parts.hostname}:{parts.port or 5432}"
        yield reader, parts._replace(netloc=netloc).geturl()
    finally:
        await admin.execute(f'DROP OWNED BY "{reader}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{reader}"')
        await admin.close()


@pytest.fixture
def pgbouncer_url(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``postgres_url`` through a PgBouncer of the test's own in transaction pooling mode, with
    one server connection for every client: a statement prepared by one client is met by the
    next, as under load with any pool. The process ends with the test."""
    import subprocess
    from urllib.parse import urlsplit

    from processes import free_port, listening, pgbouncer_program, reap

    program = pgbouncer_program()
    server = urlsplit(postgres_url)
    folder = tmp_path_factory.mktemp("pgbouncer")
    folder.chmod(0o755)  # read by the user it becomes, when started as root
    (folder / "users.txt").write_text(f'"{server.username}" ""\n')
    port = free_port()
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.hostname} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 100\n"
    )
    # PgBouncer refuses to run as root: it becomes an unprivileged user then.
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    log = folder / "pgbouncer.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [program, *as_user, str(folder / "pgbouncer.ini")],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        if not listening(process, port):
            reap(process)
            pytest.fail(f"pgbouncer did not start: {log.read_text()[-2000:]}")
        yield server._replace(netloc=f"{server.username}@127.0.0.1:{port}").geturl()
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test against every store backend (one shared behavioural base)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("postgres_url")
