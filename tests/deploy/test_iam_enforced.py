"""The worker with only what the CloudFormation template's task role grants, on a moto server
that enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT``): the template's ``!GetAtt``/``!Sub`` ARNs
resolved to the moto queues' real ARNs (and the IRSA policy of deploy/kubernetes, whose example
ARNs name queues made so), a user with that policy, the CLI run with its keys.

moto checks the resource for SQS calls that name a queue by URL; for Lambda and SES, and for
``GetQueueUrl`` (a queue's name), it checks the action on ``*`` only, so those grants are also
given on ``*`` here: their resources are checked statically (test_iam.py). moto names the
action of an operation ``service:Operation`` (``sqs:DeleteMessageBatch``, ``lambda:Invoke``),
so each granted action is given under those names too."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from deploy_helpers import (
    KUBERNETES,
    expand_foreach,
    load_template,
    readme_operator_table,
    resolve_conditions,
)

from lambda_destinations.aws_operations import OPERATIONS
from processes import ENTRY, free_port, reap

pytestmark = pytest.mark.slow  # a moto server of its own, and the CLI as processes

ACCOUNT, REGION = "123456789012", "us-east-1"
FUNCTION = "orders-api"
EVENTS = Path(__file__).resolve().parents[1] / "events"
# moto answers these on "*" whatever the request names
NO_RESOURCE_IN_MOTO = ("lambda:", "ses:", "sqs:GetQueueUrl")


@dataclass
class Moto:
    url: str
    admin: dict[str, str]  # boto3 keyword arguments of a user allowed everything

    def client(self, service: str, **keys: str) -> Any:
        return boto3.client(
            service, region_name=REGION, endpoint_url=self.url, **(keys or self.admin)
        )


def _post(url: str, body: bytes) -> None:
    httpx.post(url, content=body, headers={"Content-Type": "text/plain"}).raise_for_status()


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """A moto server of its own that enforces IAM once its admin user exists."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "1000"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        _post(f"{url}/moto-api/config", json.dumps({"lambda": {"use_docker": False}}).encode())
        iam = boto3.client("iam", region_name=REGION, endpoint_url=url)
        iam.create_user(UserName="admin")
        everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [everything]}),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        _post(f"{url}/moto-api/reset-auth", b"0")  # every request from here on is checked
        yield Moto(url, _keys(key))
    finally:
        reap(server)


def _keys(key: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }


@dataclass
class Deployment:
    urls: dict[str, str]  # the template's logical queue names -> URLs
    arns: dict[str, str]


def _deploy(moto: Moto, prefix: str | None = None) -> Deployment:
    """The template's four queues (each destination queue redriving to its DLQ)."""
    sqs = moto.client("sqs")
    prefix = prefix or f"ld-{uuid.uuid4().hex[:8]}"
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}

    def make(logical: str, name: str, attributes: dict[str, str]) -> None:
        urls[logical] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arns[logical] = sqs.get_queue_attributes(
            QueueUrl=urls[logical], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]

    for kind in ("Success", "Failure"):
        make(f"{kind}DeadLetterQueue", f"{prefix}-{kind.lower()}-dlq", {})
        redrive = {"deadLetterTargetArn": arns[f"{kind}DeadLetterQueue"], "maxReceiveCount": 5}
        make(f"{kind}Queue", f"{prefix}-{kind.lower()}", {"RedrivePolicy": json.dumps(redrive)})
    return Deployment(urls, arns)


def _resolve(node: Any, arns: dict[str, str], names: dict[str, Any]) -> Any:
    """The template's ``Fn::GetAtt X.Arn``, ``Fn::Sub`` and ``Ref`` as the deployment has them."""
    if isinstance(node, dict) and set(node) == {"Fn::GetAtt"}:
        return arns[node["Fn::GetAtt"][0]]
    if isinstance(node, dict) and set(node) == {"Fn::Sub"}:
        text: str = node["Fn::Sub"]
        for name, value in names.items():
            if isinstance(value, str):
                text = text.replace(f"${{{name}}}", value)
        assert "${" not in text, text
        return text
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return names[node["Ref"]]
    if isinstance(node, dict):
        return {key: _resolve(value, arns, names) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, arns, names) for item in node]
    return node


def _moto_names(actions: list[str]) -> list[str]:
    """Each action, and the ``service:Operation`` names moto checks for it."""
    names = set(actions)
    for op in OPERATIONS:
        if op.action in actions:
            names.add(f"{'ses' if op.service == 'sesv2' else op.service}:{op.operation}")
    return sorted(names)


def template_policy(deployment: Deployment, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The task role's statements (SMS and email on, one function, the IRSA policy's example
    record bucket), resolved for moto."""
    lists = {"FunctionNames": [FUNCTION], "RecordBuckets": ["orders-failure-records"]}
    template = expand_foreach(load_template(), lists)
    template = resolve_conditions(
        template,
        {
            "HasFunctionRoles": True,
            "SmsOn": True,
            "EmailOn": True,
            "HasAlarmTopic": True,
            "HasHandlerSecret": False,
            "HasAccountRoles": True,
            "HasRecordBuckets": True,
        },
    )
    resources = template["Resources"]
    names = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "Cluster": "cluster",
        "EmailIdentityArns": [f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"],
        "AccountRoleArns": ["arn:aws:iam::111122223333:role/lambda-destinations-invoke"],
    }
    documents = [p["PolicyDocument"] for p in resources["TaskRole"]["Properties"]["Policies"]]
    documents += [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::RolePolicy"
    ]
    statements = [
        statement
        for document in documents
        for statement in _resolve(document["Statement"], deployment.arns, names)
    ]
    return for_moto(statements, without)


def irsa_policy(_deployment: Deployment) -> dict[str, Any]:
    """deploy/kubernetes/iam-policy.json as it is: its example ARNs name the queues made."""
    document = json.loads((KUBERNETES / "iam-policy.json").read_text())
    return for_moto(document["Statement"])


def for_moto(
    granted_statements: list[dict[str, Any]], without: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A policy of these statements, less the actions ``without``, as moto checks it."""
    statements = []
    for granted_statement in granted_statements:
        statement = dict(granted_statement)
        granted = statement["Action"]
        granted = [granted] if isinstance(granted, str) else granted
        statement["Action"] = _moto_names([a for a in granted if a not in without])
        if statement["Action"]:
            statements.append(statement)
    anywhere = [
        action
        for statement in statements
        for action in statement["Action"]
        if action.startswith(NO_RESOURCE_IN_MOTO)
    ]
    statements.append({"Effect": "Allow", "Action": sorted(set(anywhere)), "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}


def user_with(moto: Moto, policy: dict[str, Any]) -> dict[str, str]:
    iam = moto.client("iam")
    name = f"u-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return _keys(iam.create_access_key(UserName=name)["AccessKey"])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("f.py", "def h(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def senders(moto: Moto) -> None:
    """The function replays invoke, the SES identity mail is sent as."""
    role = moto.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")
    moto.client("lambda").create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="f.h",
        Code={"ZipFile": _zip()},
    )
    ses = moto.client("sesv2")
    for identity in ("example.com", "oncall@example.com"):
        ses.create_email_identity(EmailIdentity=identity)


CONFIG = """
wait_time = 1
once_timeout = 20
ops_port = 0
log_format = "json"
[[routes]]
condition = "failure"
handlers = ["persist", "oncall-sms", "oncall-mail", "again"]
[[routes]]
handlers = ["persist", "replay-outcome"]
[handlers.oncall-sms]
type = "sms"
phone_numbers = ["+14155552671"]
[handlers.oncall-mail]
type = "email"
from = "alerts@example.com"
to = ["oncall@example.com"]
[handlers.again]
type = "replay"
delay = "1s"
"""


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command's last line, in the JSON the configuration's ``log_format`` asks for (every
    line of its stderr one JSON object), as the plain line says it."""
    assert all(line.startswith("{") for line in done.stderr.splitlines()), done.stderr
    last = json.loads(done.stderr.strip().splitlines()[-1])
    assert (last["level"], last["exit_code"]) == ("error", done.returncode), last
    return f"error: {last['event']}"


def run_cli(
    moto: Moto,
    deployment: Deployment,
    keys: dict[str, str],
    tmp_path: Path,
    *args: str,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ld.toml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
        "AWS_REGION": REGION,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": moto.url,
        "LAMBDA_DESTINATIONS_QUEUES": ",".join(
            deployment.urls[q] for q in ("SuccessQueue", "FailureQueue")
        ),
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "LAMBDA_DESTINATIONS_CONFIG": str(config),
    }
    return subprocess.run(
        [*ENTRY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _record(name: str) -> str:
    record = json.loads((EVENTS / name).read_text())
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}:$LATEST"
    record["requestContext"]["functionArn"] = arn
    return json.dumps(record)


def _log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _depth(moto: Moto, url: str) -> int:
    attributes = moto.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


@pytest.mark.usefixtures("senders")
@pytest.mark.parametrize(
    "policy_of", [template_policy, irsa_policy], ids=["cloudformation", "irsa"]
)
def test_the_worker_does_all_its_work_with_only_the_template_policy(
    moto: Moto, tmp_path: Path, policy_of: Callable[[Deployment], dict[str, Any]]
) -> None:
    # given: a success, a failure and a poison message on each queue; a user with the policy
    # (the IRSA policy's example ARNs name queues lambda-destinations-success …)
    deployment = _deploy(moto, "lambda-destinations" if policy_of is irsa_policy else None)
    sqs = moto.client("sqs")
    success, failure = deployment.urls["SuccessQueue"], deployment.urls["FailureQueue"]
    sqs.send_message(QueueUrl=success, MessageBody=_record("invocation-success.json"))
    sqs.send_message(
        QueueUrl=failure, MessageBody=_record("invocation-retries-exhausted-python.json")
    )
    sqs.send_message(QueueUrl=success, MessageBody='{"not": "a record"}')
    sqs.send_message(QueueUrl=failure, MessageBody="not JSON")
    keys = user_with(moto, policy_of(deployment))

    # when: doctor, the worker once (persist, quarantine, sms, email, replay scheduled), then
    # once more after the replay's delay (Invoke)
    doctor = run_cli(moto, deployment, keys, tmp_path, "doctor")
    first = run_cli(moto, deployment, keys, tmp_path, "run", "--once")
    time.sleep(1)
    second = run_cli(moto, deployment, keys, tmp_path, "run", "--once")

    # then: nothing refused anywhere
    for done in (first, second):
        assert done.returncode == 0, done.stderr
        assert "AccessDenied" not in done.stderr + done.stdout
    queue_checks = [line for line in doctor.stdout.splitlines() if "-success" in line]
    assert queue_checks, doctor.stdout
    assert not [line for line in queue_checks if " ERROR " in line], doctor.stdout
    # what the worker's role may not read (doctor is an operator's): said with the fix
    assert "<?xml" not in doctor.stdout
    (sms,) = [line for line in doctor.stdout.splitlines() if line.startswith("handler oncall-sms")]
    assert sms.rstrip().endswith("that they are allowed sns:GetSMSAttributes"), sms
    events = [line["event"] for line in _log_lines(first.stderr)]
    assert events.count("message quarantined") == 2
    assert {"SMS sent", "email sent", "replay scheduled"} <= set(events), first.stderr
    assert "replayed" in [line["event"] for line in _log_lines(second.stderr)], second.stderr
    assert _depth(moto, deployment.urls["SuccessDeadLetterQueue"]) == 1
    assert _depth(moto, deployment.urls["FailureDeadLetterQueue"]) == 1
    assert _depth(moto, success) == _depth(moto, failure) == 0


def test_a_dlq_the_worker_may_not_send_to_is_named_with_the_fix(moto: Moto, tmp_path: Path) -> None:
    # given: a role without sqs:SendMessage, and a message that can only be quarantined
    deployment = _deploy(moto)
    moto.client("sqs").send_message(QueueUrl=deployment.urls["FailureQueue"], MessageBody="x")
    keys = user_with(moto, template_policy(deployment, without=("sqs:SendMessage",)))

    # when
    done = run_cli(moto, deployment, keys, tmp_path, "run", "--once")

    # then: one line names the DLQ, SQS's refusal and the fix; the store keeps the message
    assert done.returncode == 0, done.stderr
    (refused,) = [
        line
        for line in _log_lines(done.stderr)
        if line["event"] == "the DLQ refused the quarantined message"
    ]
    assert refused["dlq"] == deployment.urls["FailureDeadLetterQueue"]
    assert "AccessDenied" in refused["error"]
    assert "<?xml" not in refused["error"]
    assert refused["fix"].endswith("allowed sqs:SendMessage")
    assert "quarantined 1" in done.stdout
    listed = run_cli(moto, deployment, keys, tmp_path, "quarantine", "list")
    assert "not JSON" in listed.stdout, listed

    # and: resending it with keys that may not send says so, naming the queue
    resent = run_cli(moto, deployment, keys, tmp_path, "quarantine", "resend", "--all", "--yes")
    assert resent.returncode == 1, resent
    queue = deployment.urls["FailureQueue"]
    assert f"that they are allowed sqs:SendMessage on {queue}" in resent.stderr, resent


def test_an_operator_command_the_worker_may_not_run_says_so_in_one_line(
    moto: Moto, tmp_path: Path
) -> None:
    # given: the worker's keys, which may not read a DLQ's messages (operators' work)
    deployment = _deploy(moto)
    keys = user_with(moto, template_policy(deployment))
    dlq = deployment.urls["FailureDeadLetterQueue"]

    # when
    done = run_cli(moto, deployment, keys, tmp_path, "dlq", "peek", dlq)

    # then: the action, SQS's refusal and the fix, exit 3 (credentials), no XML
    assert done.returncode == 3, done
    assert len(done.stderr.strip().splitlines()) == 1, done
    line = error_line(done)
    assert line.startswith("error: ReceiveMessage was refused (AccessDenied: "), line
    assert line.endswith("that they are allowed sqs:ReceiveMessage"), line
    assert "<" not in line


def test_an_operator_granted_what_the_readme_lists_can_peek(moto: Moto, tmp_path: Path) -> None:
    # given: a user with the README's actions for `dlq peek`, on the DLQ alone
    deployment = _deploy(moto)
    dlq = deployment.urls["FailureDeadLetterQueue"]
    moto.client("sqs").send_message(QueueUrl=dlq, MessageBody="dead")
    actions = re.findall(r"`(\w+:\w+)`", readme_operator_table()["dlq peek"])
    on_dlq = {"Effect": "Allow", "Action": _moto_names(actions)}
    on_dlq["Resource"] = deployment.arns["FailureDeadLetterQueue"]
    keys = user_with(moto, {"Version": "2012-10-17", "Statement": [on_dlq]})

    # when
    done = run_cli(moto, deployment, keys, tmp_path, "dlq", "peek", dlq)

    # then
    assert done.returncode == 0, done.stderr
    assert "body is not JSON" in done.stdout  # the message, read and shown


def test_a_dlq_the_worker_may_not_look_up_stops_the_start_naming_it(
    moto: Moto, tmp_path: Path
) -> None:
    # given: a role without sqs:GetQueueUrl (the worker looks each DLQ up by its name)
    deployment = _deploy(moto)
    keys = user_with(moto, template_policy(deployment, without=("sqs:GetQueueUrl",)))

    # when
    done = run_cli(moto, deployment, keys, tmp_path, "run", "--once")

    # then: one line, exit 3, naming the DLQ, its queue, the action and the fix
    assert done.returncode == 3, done
    line = error_line(done)
    dlq, queue = deployment.arns["SuccessDeadLetterQueue"], deployment.urls["SuccessQueue"]
    assert line.startswith(f"error: GetQueueUrl on {dlq} (the DLQ of {queue}) was refused ("), line
    assert line.endswith("that they are allowed sqs:GetQueueUrl on it"), line


def test_a_queue_the_worker_may_not_delete_from_says_so_with_the_fix(
    moto: Moto, tmp_path: Path
) -> None:
    # given: a role without sqs:DeleteMessage, and a record to handle
    deployment = _deploy(moto)
    success = deployment.urls["SuccessQueue"]
    moto.client("sqs").send_message(
        QueueUrl=success, MessageBody=_record("invocation-success.json")
    )
    keys = user_with(moto, template_policy(deployment, without=("sqs:DeleteMessage",)))

    # when
    done = run_cli(moto, deployment, keys, tmp_path, "run", "--once")

    # then: the refusal names the queue, SQS's reason and the fix; the message stays queued,
    # and the job, whose delete SQS did not take, does not end as if clean (exit 4)
    assert done.returncode == 4, done.stderr
    assert _log_lines(done.stderr)[-1]["event"].startswith(
        "SQS did not confirm the deletes of 1 acked messages"
    ), done.stderr
    refused = [
        line
        for line in _log_lines(done.stderr)
        if line["event"] == "delete batch failed; the messages will be delivered again"
    ]
    assert refused, done.stderr
    assert {line["queue"] for line in refused} == {success}
    assert all(
        line["error"].startswith("ClientError: An error occurred (AccessDenied)")
        for line in refused
    )
    assert all(line["fix"].endswith("allowed sqs:DeleteMessage") for line in refused)
    attributes = moto.client("sqs").get_queue_attributes(
        QueueUrl=success,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert sum(int(count) for count in attributes.values()) == 1


def test_doctor_names_the_writes_the_worker_may_not_make_and_changes_nothing(
    moto: Moto, tmp_path: Path
) -> None:
    # given: a role without sqs:DeleteMessage nor sqs:SendMessage (its DLQs), and a message
    # waiting on the failure queue
    deployment = _deploy(moto)
    queue, dlq = deployment.urls["FailureQueue"], deployment.urls["FailureDeadLetterQueue"]
    moto.client("sqs").send_message(QueueUrl=queue, MessageBody="waiting")
    without = ("sqs:DeleteMessage", "sqs:SendMessage")
    keys = user_with(moto, template_policy(deployment, without=without))

    # when
    done = run_cli(moto, deployment, keys, tmp_path, "doctor", "--json")

    # then: one row per queue names what is refused, what follows, and the grants to add
    assert done.returncode == 1, done
    rows = {row["check"]: row for row in json.loads(done.stdout)["checks"]}
    name = queue.rsplit("/", 1)[1]
    row = rows[f"{name}: writes"]
    assert row["status"] == "error"
    assert row["detail"].startswith(
        f"sqs:DeleteMessage refused on {name}: a message handled is never deleted"
    ), row
    assert f"sqs:SendMessage refused on {name}-dlq: a quarantined message is kept" in row["detail"]
    assert "ChangeMessageVisibility" not in row["detail"]  # allowed: not said
    assert row["fix"] == (
        f"allow sqs:DeleteMessage on {deployment.arns['FailureQueue']}, and sqs:SendMessage on "
        f"{deployment.arns['FailureDeadLetterQueue']} to these credentials (the worker's role)"
    )
    # and: the tries changed nothing: the message still waits, visible; no dead letter
    attributes = moto.client("sqs").get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert _depth(moto, dlq) == 0


@pytest.mark.usefixtures("senders")
def test_a_replay_lambda_refuses_says_which_permission_is_missing(
    moto: Moto, tmp_path: Path
) -> None:
    # given: a role without lambda:InvokeFunction (a function not in FunctionNames, say), and
    # a failure the route replays
    deployment = _deploy(moto)
    failure = _record("invocation-retries-exhausted-python.json")
    moto.client("sqs").send_message(QueueUrl=deployment.urls["FailureQueue"], MessageBody=failure)
    keys = user_with(moto, template_policy(deployment, without=("lambda:InvokeFunction",)))
    request_id = json.loads(failure)["requestContext"]["requestId"]

    # when: the worker's replay job runs, then an operator replays with the same keys
    run_cli(moto, deployment, keys, tmp_path, "run", "--once")
    time.sleep(1)
    job = run_cli(moto, deployment, keys, tmp_path, "run", "--once")
    by_hand = run_cli(moto, deployment, keys, tmp_path, "replay", request_id, "--yes", "--force")

    # then: each says what to allow, the worker's job naming the worker's credentials
    (failed,) = [
        line for line in _log_lines(job.stderr) if line["event"] == "job failed permanently"
    ]
    assert failed["error"].endswith(
        "check the worker's AWS credentials and that they are allowed lambda:InvokeFunction"
    )
    assert by_hand.returncode == 1, by_hand
    assert "check the AWS credentials and that they are allowed lambda:InvokeFunction" in (
        by_hand.stdout
    )


def test_a_job_the_worker_may_not_receive_for_ends_with_the_permission(
    moto: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a role without sqs:ReceiveMessage (its start needs none)
    deployment = _deploy(moto)
    keys = user_with(moto, template_policy(deployment, without=("sqs:ReceiveMessage",)))

    # when: a job, which waits once_timeout for its receives
    monkeypatch.setenv("LAMBDA_DESTINATIONS_ONCE_TIMEOUT", "2")
    done = run_cli(moto, deployment, keys, tmp_path, "run", "--once", timeout=30)

    # then: it ends (before, it retried for ever) with exit 4 and the permission to allow
    assert done.returncode == 4, done
    line = error_line(done)
    assert line.startswith("error: cannot receive from "), line
    assert "that they are allowed sqs:ReceiveMessage, and run it again" in line
    (warning,) = {
        entry["fix"]
        for entry in _log_lines(done.stderr)
        if entry["event"].startswith("cannot receive from") and "exit_code" not in entry
    }
    assert warning.startswith("check the worker's AWS credentials and that they are allowed")
