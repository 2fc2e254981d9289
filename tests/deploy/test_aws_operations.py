"""The list of AWS operations (aws_operations.py) against the calls the package really makes."""

from __future__ import annotations

from pathlib import Path

import botocore.session
from deploy_helpers import (
    OPERATION_DISPATCHERS,
    PACKAGE,
    client_calls,
    client_services,
    dynamic_dispatchers,
)

from lambda_destinations.aws_operations import OPERATIONS, Scope, operations
from lambda_destinations.worker.metrics import SQS_OPERATIONS

# Packages whose calls run inside the deployed worker: each needs a WORKER entry.
WORKER_PACKAGES = ("worker/", "handlers/")
# ...and the module of AWS helpers the worker shares with the commands (the replay invoke).
SHARED_WITH_THE_WORKER = ("aws.py",)


def _listed() -> set[tuple[str, str]]:
    """What the package calls itself (the ECS agent's calls are made for it, not by it)."""
    return {(op.service, op.operation) for op in OPERATIONS if op.via == "sdk"}


def test_every_client_call_is_listed() -> None:
    calls = client_calls()
    assert calls, "the scan found no client call at all: the scanner is broken"
    listed = _listed()
    missing = [
        f"{call.path}:{call.line} {call.receiver}.… is {sorted(call.service_operations)}"
        for call in calls
        if not call.service_operations & listed
    ]
    assert not missing, "AWS calls not in aws_operations.OPERATIONS:\n" + "\n".join(missing)


def test_every_listed_operation_is_called() -> None:
    called = set().union(*(call.service_operations for call in client_calls()))
    stale = sorted(_listed() - called)
    assert not stale, f"listed but never called (remove them from OPERATIONS): {stale}"


def test_calls_in_the_worker_have_a_worker_entry() -> None:
    worker = {(op.service, op.operation) for op in operations(Scope.WORKER)}
    wrong = [
        f"{call.path}:{call.line} {sorted(call.service_operations)}"
        for call in client_calls()
        if call.path.startswith(WORKER_PACKAGES) and not call.service_operations & worker
    ]
    assert not wrong, "called by the worker but not granted to it:\n" + "\n".join(wrong)


def test_every_worker_operation_is_called_by_the_worker() -> None:
    # A WORKER entry that only the operator commands call would let its permission go from
    # the templates unnoticed: the worker's own calls must be the ones the scan finds.
    called = set().union(
        *(
            call.service_operations
            for call in client_calls()
            if call.path.startswith(WORKER_PACKAGES + SHARED_WITH_THE_WORKER)
        )
    )
    worker = {(op.service, op.operation) for op in operations(Scope.WORKER) if op.via == "sdk"}
    assert sorted(worker - called) == []


def test_every_sqs_operation_of_the_worker_has_its_failures_counted() -> None:
    # CountedSqs counts the operations of SQS_OPERATIONS alone (the label's documented values):
    # an SQS call the worker began to make would otherwise fail uncounted.
    worker = {op.operation for op in operations(Scope.WORKER) if op.service == "sqs"}
    assert sorted(worker) == sorted(SQS_OPERATIONS)


def test_every_call_by_a_name_chosen_at_run_time_is_read_by_the_scan() -> None:
    # getattr(client, xform_name(name)) hides the call from a scan of method names: each
    # function doing it must be one whose callers the scan reads the name from.
    assert dynamic_dispatchers() <= set(OPERATION_DISPATCHERS)


def test_the_scan_sees_a_call_it_was_not_told_about(tmp_path: Path) -> None:
    # given a module that calls an operation the list does not name
    (tmp_path / "extra.py").write_text(
        "async def f(aws):\n    sqs = await aws.client('sqs')\n"
        "    await sqs.purge_queue(QueueUrl='u')\n"
        "async def g(store):\n    await store.list_functions()\n"
    )
    # when it is scanned
    calls = client_calls(tmp_path)
    # then the SQS call is found, and the store's look-alike method is not
    assert [sorted(c.service_operations) for c in calls] == [[("sqs", "PurgeQueue")]]


def test_each_entry_names_a_real_operation_and_its_iam_service() -> None:
    session = botocore.session.get_session()
    services = client_services()
    for op in OPERATIONS:
        assert op.service in services or op.via == "ecs-agent"
        model = session.get_service_model(op.service)
        assert op.operation in model.operation_names, op
        if op.action is not None:
            prefix = {"sesv2": "ses", "lambda": "lambda"}.get(op.service, op.service)
            assert op.action.startswith(f"{prefix}:"), op
        assert op.reason
        assert op.targets
    keys = [(op.service, op.operation, op.scope) for op in OPERATIONS]
    assert len(keys) == len(set(keys)), "an operation is listed twice for one scope"


def test_the_calls_botocores_role_fetcher_makes_for_the_package_are_listed() -> None:
    # The accounts table's roles are assumed by botocore's AssumeRole credential fetcher, not
    # by a call the scan sees: the worker (the replay handler) and the commands need it listed.
    source = (PACKAGE / "aws.py").read_text(encoding="utf-8")
    assert "AioAssumeRoleCredentialFetcher" in source
    fetched = {
        op.scope: op.action
        for op in OPERATIONS
        if op.via == "assume-role" and (op.service, op.operation) == ("sts", "AssumeRole")
    }
    assert fetched == {Scope.WORKER: "sts:AssumeRole", Scope.OPERATOR: "sts:AssumeRole"}
    assert {op.via for op in OPERATIONS} == {"sdk", "ecs-agent", "assume-role"}
