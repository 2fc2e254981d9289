"""A start that fails part-way closes what it opened; `run --once` gives up on unreachable
endpoints after LAMBDA_DESTINATIONS_ONCE_TIMEOUT. Run as processes with ResourceWarning an
error, and a collection before exit so any unclosed client or connection would say so."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from accounts_endpoint import AccountsEndpoint
from processes import file_size_limit as limited_to
from processes import free_port

# Every ResourceWarning an error (reported as "Exception ignored ... ResourceWarning" when
# raised in a finaliser); the collection at exit reaches whatever the failed start left open.
# Not -X dev: its strict HTTP parser refuses moto's duplicate Server header.
MAIN = "\n".join(
    [
        "import gc",
        "from lambda_destinations.cli import main",
        "try:",
        "    main()",
        "finally:",
        "    gc.collect()",
    ]
)
ENTRY = [sys.executable, "-W", "error::ResourceWarning", "-c", MAIN]


def run(
    env: dict[str, str], *, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``run --once``; with ``file_size_limit``, its files may not grow past that many bytes."""
    return subprocess.run(
        [*ENTRY, "run", "--once"],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=None if file_size_limit is None else limited_to(file_size_limit),
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The last line, with JSON logs one JSON object: its event, as the plain line says it."""
    last = json.loads(result.stderr.strip().splitlines()[-1])
    assert (last["level"], last["exit_code"]) == ("error", result.returncode), last
    return f"error: {last['event']}"


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The JSON lines at level error, as the plain lines say them; none of them plain."""
    assert not [line for line in result.stderr.splitlines() if line.startswith("error:")]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [f"error: {line['event']}" for line in lines if line["level"] == "error"]


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    for leak in ("ResourceWarning", "Unclosed", "unclosed", "Traceback"):
        assert leak not in result.stderr, result.stderr


@pytest.fixture
def base_env(endpoint_url: str, sqlite_url: str) -> dict[str, str]:
    return {
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
    }


def test_a_fifo_queue_stops_the_start_with_nothing_left_open(sqs, make_queue, base_env) -> None:
    # given: a good queue, then a FIFO one: the start fails after the store and SQS are open
    good, _ = make_queue("good")
    fifo = sqs.create_queue(QueueName="start-fail.fifo", Attributes={"FifoQueue": "true"})
    try:
        result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": f"{good},{fifo['QueueUrl']}"})
    finally:
        sqs.delete_queue(QueueUrl=fifo["QueueUrl"])
    assert result.returncode == 3, result.stderr
    assert error_line(result).startswith("error: queue start-fail.fifo is FIFO")
    assert_clean(result)


def test_one_queue_by_its_name_and_its_url_stops_the_start(make_queue, base_env) -> None:
    # given: a queue listed by its URL and by its name: two entries, one queue
    url, _ = make_queue("twice")
    name = url.rsplit("/", 1)[-1]
    result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": f"{url},{name}"})
    assert result.returncode == 3, result.stderr
    line = error_line(result)
    assert line == (
        f"error: queues {url!r} and {name!r} are the same queue: "
        "list it once in LAMBDA_DESTINATIONS_QUEUES"
    )
    assert_clean(result)


@pytest.fixture
def accounts(moto_server: str) -> Iterator[AccountsEndpoint]:
    """moto behind the proxy that serves each SQS call from its queue's account, as AWS."""
    with AccountsEndpoint(moto_server).running() as endpoint:
        yield endpoint


@pytest.fixture
def queue_of(accounts: AccountsEndpoint) -> Iterator[Callable[[str, str, str], str]]:
    """A queue of an account, with its DLQ (deleted after the test); its URL."""
    made: list[tuple[str, str]] = []

    def make(account: str, name: str, dlq_name: str) -> str:
        sqs = accounts.sqs_of(account)
        dlq = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
        made.append((account, dlq))
        policy = {"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{account}:{dlq_name}"}
        attributes = {"RedrivePolicy": json.dumps({**policy, "maxReceiveCount": "5"})}
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        made.append((account, url))
        return url

    yield make
    for account, url in made:
        accounts.sqs_of(account).delete_queue(QueueUrl=url)


def refusal_of_two(accounts: AccountsEndpoint, base_env: dict[str, str], *queues: str) -> str:
    """The line ``run --once`` exits 3 with, polling ``queues`` through ``accounts``."""
    queues_env = {"LAMBDA_DESTINATIONS_QUEUES": ",".join(queues)}
    result = run({**base_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": accounts.url, **queues_env})
    assert result.returncode == 3, result.stderr
    assert_clean(result)
    return error_line(result)


@pytest.mark.parametrize("alike", ["queues", "their DLQs"])
def test_two_accounts_queues_or_dlqs_of_one_name_stop_the_start(
    alike, accounts, queue_of, base_env
) -> None:
    # given: queues of two accounts, reachable by the worker's credentials, named alike, or
    # whose DLQs are (before: two pollers of one name, a traceback; or DLQ depths that were
    # one series on /metrics, the one sampled last)
    name = f"orders-{uuid.uuid4().hex[:8]}"
    names = (name, name) if alike == "queues" else (f"{name}-a", f"{name}-b")
    one = queue_of("111111111111", names[0], f"{name}-dlq")
    other = queue_of("222222222222", names[1], f"{name}-dlq")

    line = refusal_of_two(accounts, base_env, one, other)

    # then: one line naming both
    apart = "of accounts 111111111111 and 222222222222, which the worker tells apart by name only"
    fix = "poll them with a worker each (each with its own LAMBDA_DESTINATIONS_QUEUES)"
    if alike == "queues":
        assert line == (
            f"error: queues {one!r} and {other!r} are two queues named {name}, {apart} (the "
            f"queue label of its metrics, its log lines, /readyz): {fix}"
        )
    else:
        assert line == (
            f"error: the DLQs of {names[0]} and {names[1]} are two queues named {name}-dlq, "
            f"{apart} (the queue label of the depths it samples for /metrics): {fix}"
        )


def test_a_queue_arn_of_another_region_stops_the_start(sqs, make_queue, base_env) -> None:
    # given: the ARN of a queue in eu-west-1 whose name a queue of the worker's region has
    url, _ = make_queue("rgn")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ].replace(":us-east-1:", ":eu-west-1:")
    result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": arn})
    assert result.returncode == 3, result.stderr
    assert error_line(result) == (
        f"error: queue {arn!r} is in eu-west-1, the worker in us-east-1: "
        "set LAMBDA_DESTINATIONS_REGION=eu-west-1, or run one worker per region"
    )
    assert_clean(result)


def test_a_queue_url_of_another_region_stops_the_start(make_queue, base_env) -> None:
    # given: the AWS URL of a queue in eu-west-1 whose name a queue of the worker's region has
    # (moto answers for it whatever the host: before, the worker polled the us-east-1 queue;
    # AWS answers "does not exist", which says nothing of the region)
    url, _ = make_queue("rgnurl")
    account, name = url.rsplit("/", 2)[-2:]
    other = f"https://sqs.eu-west-1.amazonaws.com/{account}/{name}"
    result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": other})
    assert result.returncode == 3, result.stderr
    assert error_line(result) == (
        f"error: queue {other} is in eu-west-1, the worker in us-east-1: set "
        "LAMBDA_DESTINATIONS_REGION=eu-west-1, or run one worker per region "
        "(or fix LAMBDA_DESTINATIONS_QUEUES)"
    )
    assert_clean(result)


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://eu-west-1.queue.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        ("https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"),
        ("https://sqs.eu-west-1.api.aws/123456789012/q", "eu-west-1"),
        ("https://queue.amazonaws.com/123456789012/q", None),  # legacy: names none
        ("http://127.0.0.1:4566/000000000000/q", None),
        ("http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q", None),
        ("https://vpce-0a1-b2.sqs.eu-west-1.vpce.amazonaws.com/123456789012/q", None),
    ],
)
def test_the_region_of_a_queue_url_is_read_from_aws_hosts_only(
    url: str, region: str | None
) -> None:
    from lambda_destinations.worker.queues import url_region

    assert url_region(url) == region


def test_a_topic_arn_given_as_a_queue_stops_the_start_naming_the_way_to_its_queue(
    base_env,
) -> None:
    # before: "queue '…' is not an SQS queue ARN: fix LAMBDA_DESTINATIONS_QUEUES (a URL, a
    # name, or arn:aws:sqs:…)": true, and no help to whoever copied the destination's ARN
    topic = "arn:aws:sns:us-east-1:123456789012:order-failures"
    result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": topic})
    assert result.returncode == 3, result.stderr
    assert error_line(result) == (
        f"error: queue {topic!r} is an SNS topic's ARN, not a queue's: fix "
        "LAMBDA_DESTINATIONS_QUEUES: name the SQS queue subscribed to the topic (`aws sns "
        f"list-subscriptions-by-topic --topic-arn {topic}` lists them)"
    )
    assert_clean(result)


@pytest.mark.parametrize(
    "queue", ["sqs.us-east-1.amazonaws.com/123456789012/orders", "orders success", "orders+1"]
)
def test_a_queue_no_queue_could_be_named_stops_the_start(queue: str, base_env) -> None:
    # before: "queue ... does not exist: fix LAMBDA_DESTINATIONS_QUEUES or create the queue",
    # a queue no one can create (a URL without its scheme, a space, a sign no name takes)
    result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": queue})
    assert result.returncode == 3, result.stderr
    assert error_line(result) == (
        f"error: queue {queue!r} is no queue URL, name or ARN: fix LAMBDA_DESTINATIONS_QUEUES "
        "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME, a name of letters, digits, - and _, or "
        "arn:aws:sqs:REGION:ACCOUNT:NAME)"
    )
    assert_clean(result)


@pytest.mark.parametrize(
    "queue",
    [
        "orders success",
        "arn:aws:sqs:eu-west-1:123456789012:orders",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders",
        "arn:aws:sns:us-east-1:123456789012:orders",
    ],
)
def test_a_queue_setting_no_queue_fits_stops_the_start_before_anything_opens(
    queue: str, base_env, sqlite_url
) -> None:
    # before: the ops server listened (a probe saw a worker starting) and the store was made
    # and migrated, then the start found what the setting alone says
    env = {**base_env, "LAMBDA_DESTINATIONS_QUEUES": queue}
    result = run({**env, "LAMBDA_DESTINATIONS_OPS_PORT": str(free_port())})
    assert result.returncode == 3, result.stderr
    assert error_line(result).startswith("error: queue ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_a_bad_route_stops_the_start_with_nothing_left_open(make_queue, base_env) -> None:
    good, _ = make_queue("route")
    routes = json.dumps([{"handlers": ["no-such-handler"]}])
    result = run(
        {**base_env, "LAMBDA_DESTINATIONS_QUEUES": good, "LAMBDA_DESTINATIONS_ROUTES": routes}
    )
    assert result.returncode == 3, result.stderr
    assert "no-such-handler" in error_line(result)
    assert_clean(result)


@pytest.mark.parametrize("what", ["store", "SQS"])
def test_run_once_gives_up_on_an_unreachable_endpoint_with_exit_4(
    what, make_queue, base_env
) -> None:
    # given: the store or SQS on a port nobody listens on, and a 3 s patience
    good, _ = make_queue("away")
    env = {**base_env, "LAMBDA_DESTINATIONS_QUEUES": good, "LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "3"}
    if what == "store":
        env["LAMBDA_DESTINATIONS_STORE"] = f"postgresql://u@127.0.0.1:{free_port()}/db"
    else:
        env["LAMBDA_DESTINATIONS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"

    # when
    result = run(env)

    # then: exit 4 with one line naming what stayed away, and nothing left open
    assert result.returncode == 4, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {what} stayed unreachable for 3s")
    assert_clean(result)


def test_run_once_gives_up_on_a_store_with_no_room_with_the_store_s_own_fix(
    make_queue, base_env, sqlite_url
) -> None:
    # given: a migrated SQLite store, and a worker whose files may not pass 16 KiB: opening the
    # store sizes its -shm file to 32 KiB, which fails as it does on a full disk
    good, _ = make_queue("noroom")
    made = subprocess.run(
        [*ENTRY, "migrate"], env={**os.environ, **base_env}, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    env = {**base_env, "LAMBDA_DESTINATIONS_QUEUES": good, "LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "3"}

    # when
    result = run(env, file_size_limit=16 * 1024)

    # then: exit 4 with one line ending with the store's own fix (it added "check the store URL
    # and that the database server is up", of a file on this machine's disk)
    assert result.returncode == 4, result.stderr
    errors = error_lines(result)
    assert errors == [
        f"error: store stayed unreachable for 3s: store {sqlite_url} (LAMBDA_DESTINATIONS_STORE) "
        "is unavailable: disk I/O error (the file is at or near this process's file size limit, "
        "16384 bytes): raise the limit (ulimit -f)"
    ]
    assert_clean(result)


class _ErrorPage(http.server.BaseHTTPRequestHandler):
    """Answers every request as a proxy with nothing behind it would: a 502 HTML page (or, as
    a captive portal does, a 200 with it)."""

    status = 502

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        page = (
            b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
            b"<body><h1>Bad Gateway</h1>\n<p>nothing behind this proxy</p></body>\n</html>\n"
        )
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: object) -> None:
        return


class _PortalPage(_ErrorPage):
    status = 200


# A 502 may be an outage: waited out, then exit 4. A 200 is a page in place of AWS: the call
# failed (1), as a 4xx page does.
@pytest.mark.parametrize(("page", "code"), [(_ErrorPage, 4), (_PortalPage, 1)], ids=["502", "200"])
def test_an_endpoint_answering_html_pages_is_one_line_naming_the_page(
    base_env, page: type[_ErrorPage], code: int
) -> None:
    # given: an endpoint URL where a proxy answers every call with its HTML error page (with a
    # 200: before, SQS's JSON parser read it as an answer with nothing in it)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **base_env,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "LAMBDA_DESTINATIONS_QUEUES": "q1",
        "LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "3",
    }
    try:
        result = run(env)
    finally:
        server.shutdown()
        server.server_close()

    # then: exit 4 (1); the line names the page by its title, without the page (before, the
    # whole page, over several lines, was in the error and in every retry's log line)
    assert result.returncode == code, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1
    assert "an HTML page titled '502 Bad Gateway', not an AWS answer" in errors[0]
    assert "<html" not in result.stderr.lower()
    assert_clean(result)


def test_a_queue_polled_beside_the_queue_it_is_the_dlq_of_stops_the_start(
    make_queue, base_env
) -> None:
    # given: a queue and its own DLQ both polled: before, the worker took back every message
    # quarantined or dead-lettered there (the DLQ left empty for `dlq peek`, each quarantine
    # stored twice, a permanently failing handler called again)
    url, dlq = make_queue("both")
    name, dlq_name = url.rsplit("/", 1)[-1], dlq.rsplit("/", 1)[-1]
    result = run({**base_env, "LAMBDA_DESTINATIONS_QUEUES": f"{url},{dlq}"})
    assert result.returncode == 3, result.stderr
    assert error_line(result) == (
        f"error: {dlq_name} is the dead-letter queue of polled queue {name}: the worker would "
        "take back what is dead-lettered there: take it out of LAMBDA_DESTINATIONS_QUEUES "
        f"(inspect it with `dlq peek {dlq_name}`, move it back with `dlq redrive {dlq_name}`)"
    )
    assert_clean(result)
