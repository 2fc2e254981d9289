"""Replays of functions in other accounts than the credentials' (a platform account's worker
serving the functions of accounts A and B), against moto over HTTP behind the proxy that
refuses what AWS refuses across accounts (tests/accounts_endpoint.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import cli, error_lines, failure_body, row_of, seed_sync

from accounts_endpoint import AccountsEndpoint
from lambda_destinations.config import load_settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.store import FailureStatus, InvocationRow, Store
from lambda_destinations.store.base import ReplayOutcome

OWN = "123456789012"  # moto's account of the tests' keys
OTHER = "111122223333"
ROLE = f"arn:aws:iam::{OTHER}:role/lambda-destinations-invoke"
FUNCTION = f"arn:aws:lambda:us-east-1:{OTHER}:function:orders-api"
OWN_FUNCTION = f"arn:aws:lambda:us-east-1:{OWN}:function:billing-api"


@pytest.fixture
def accounts(lambda_endpoint: Any) -> Iterator[AccountsEndpoint]:
    """moto's Lambda without Docker (which invokes whatever ARN it is given) behind the proxy."""
    with AccountsEndpoint(lambda_endpoint.url).running() as endpoint:
        yield endpoint


@pytest.fixture
def env(accounts: AccountsEndpoint, sqlite_url: str) -> dict[str, str]:
    return {
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": accounts.url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
    }


def failure_of(arn: str, n: int = 1) -> InvocationRow:
    _body, record = failure_body(n, function="orders-api", payload={"order": n})
    record["requestContext"]["functionArn"] = arn
    return row_of(json.dumps(record))


def seeded_with_role(sqlite_url: str) -> tuple[InvocationRow, str]:
    """A failure of FUNCTION (account OTHER) in the store, and the accounts table naming ROLE
    for OTHER (as LAMBDA_DESTINATIONS_ACCOUNTS)."""
    row = failure_of(FUNCTION)
    seed_sync(sqlite_url, [row])
    return row, json.dumps({OTHER: {"role_arn": ROLE}})


def state(url: str, row: InvocationRow) -> tuple[FailureStatus | None, list[ReplayOutcome]]:
    async def go() -> tuple[FailureStatus | None, list[ReplayOutcome]]:
        async with Store.from_url(url) as store:
            found = await store.get_invocation(row.key)
            attempts = await store.replays(row.key)
            return (found.status if found else None), [a.outcome for a in attempts]

    return asyncio.run(go())


def test_a_replay_of_another_accounts_function_without_a_role_says_the_accounts_and_the_fix(
    accounts: AccountsEndpoint, env: dict[str, str], sqlite_url: str
) -> None:
    row = failure_of(FUNCTION)
    seed_sync(sqlite_url, [row])

    result = cli("replay", row.request_id or "", "--yes", "--json", env=env)

    assert result.returncode == 1, result.stderr
    (outcome,) = json.loads(result.stdout)["results"]
    assert outcome["state"] == "error"
    assert outcome["error"] == "refused"
    assert outcome["detail"] == (
        f"Invoke refused (AccessDeniedException): {FUNCTION} is in account {OTHER}, and the AWS "
        f"credentials are account {OWN}'s: set a role of account {OTHER} to assume for it: "
        f'[accounts.{OTHER}] role_arn = "arn:aws:iam::{OTHER}:role/NAME" in the TOML file (or '
        f"LAMBDA_DESTINATIONS_ACCOUNTS), or let account {OWN} invoke it in the function's "
        "resource-based policy"
    )
    assert "Traceback" not in result.stderr
    assert accounts.refused == [(FUNCTION, OWN)]
    # nothing ran: the failure stays open, its attempt an error a later replay may retry
    assert state(sqlite_url, row) == (FailureStatus.OPEN, [ReplayOutcome.ERROR])


def test_invoke_of_another_accounts_function_without_a_role_is_one_line_exit_3(
    accounts: AccountsEndpoint, env: dict[str, str]
) -> None:
    result = cli("invoke", FUNCTION, "--payload", "{}", env=env)

    assert result.returncode == 3, result.stderr
    (line,) = error_lines(result)
    assert f"is in account {OTHER}, and the AWS credentials are account {OWN}'s" in line
    assert f"[accounts.{OTHER}] role_arn" in line
    assert result.stdout == ""


def test_with_a_role_for_the_account_its_functions_are_invoked_as_that_role_and_others_as_ours(
    accounts: AccountsEndpoint, env: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    # given: a failure of account A's function, one of our own account's, and A's role
    theirs, ours = failure_of(FUNCTION, 1), failure_of(OWN_FUNCTION, 2)
    seed_sync(sqlite_url, [theirs, ours])
    config = tmp_path / "c.toml"
    config.write_text(f'[accounts.{OTHER}]\nrole_arn = "{ROLE}"\nexternal_id = "platform-c"\n')

    # when
    result = cli(
        "replay",
        "--status",
        "open",
        "--yes",
        env={**env, "LAMBDA_DESTINATIONS_CONFIG": str(config)},
    )

    # then: each Invoke signed by keys of its function's account, the role assumed once
    assert result.returncode == 0, result.stderr
    assert sorted(accounts.invoked) == sorted([(FUNCTION, OTHER), (OWN_FUNCTION, OWN)])
    assert accounts.refused == []
    assert accounts.assumed == [ROLE]
    assert state(sqlite_url, theirs) == (FailureStatus.REPLAYED, [ReplayOutcome.INVOKED])
    assert state(sqlite_url, ours) == (FailureStatus.REPLAYED, [ReplayOutcome.INVOKED])


def test_a_role_that_cannot_be_assumed_is_one_line_naming_it_and_the_failure_stays_open(
    accounts: AccountsEndpoint, env: dict[str, str], sqlite_url: str
) -> None:
    accounts.untrusting.add(ROLE)
    row, roles = seeded_with_role(sqlite_url)

    result = cli(
        "replay", row.request_id or "", "--yes", "--json",
        env={**env, "LAMBDA_DESTINATIONS_ACCOUNTS": roles},
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    (outcome,) = json.loads(result.stdout)["results"]
    assert outcome["error"] == "refused"
    assert outcome["detail"].startswith(
        f"AssumeRole refused (AccessDenied): cannot assume {ROLE}, the role of accounts.{OTHER}: "
    )
    assert outcome["detail"].endswith(
        "the role's trust policy must let the worker's role assume it (sts:AssumeRole), and the "
        f"worker's credentials must be allowed sts:AssumeRole on {ROLE}"
    )
    # one line for it: botocore's own warning of the failed refresh is not said too
    assert "Refreshing temporary credentials failed" not in result.stderr
    assert accounts.invoked == []
    assert accounts.refused == []
    assert state(sqlite_url, row) == (FailureStatus.OPEN, [ReplayOutcome.ERROR])


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"1111": {"role_arn": ROLE}},
            "setting 'accounts' (LAMBDA_DESTINATIONS_ACCOUNTS): '1111' is not an AWS account id",
        ),
        (
            {OTHER: {"role_arn": f"arn:aws:iam::{OWN}:role/x"}},
            f"accounts.{OTHER}.role_arn is a role of account {OWN}",
        ),
        (
            {OTHER: {"role_arn": "orders"}},
            f"setting 'accounts.{OTHER}.role_arn' (LAMBDA_DESTINATIONS_ACCOUNTS): 'orders' is "
            "not an IAM role ARN",
        ),
        (
            {OTHER: {"rolearn": ROLE}},
            f"unknown setting 'accounts.{OTHER}.rolearn' (LAMBDA_DESTINATIONS_ACCOUNTS): an "
            "account's table takes role_arn (required) and external_id",
        ),
    ],
)
def test_a_bad_account_table_is_one_line_naming_it(
    table: dict[str, object], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDA_DESTINATIONS_ACCOUNTS", json.dumps(table))
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert problem in str(raised.value)


def doctor_rows(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = cli("doctor", "--json", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return {c["check"]: c for c in json.loads(result.stdout)["checks"]}


def test_doctor_assumes_each_accounts_role_and_says_the_refusal_of_one_that_trusts_nobody(
    accounts: AccountsEndpoint, env: dict[str, str]
) -> None:
    # given: a role of account A that can be assumed, and one of account B that trusts nobody
    refusing = "arn:aws:iam::444455556666:role/lambda-destinations-invoke"
    accounts.untrusting.add(refusing)
    table = {OTHER: {"role_arn": ROLE}, "444455556666": {"role_arn": refusing}}

    # when
    rows = doctor_rows({**env, "LAMBDA_DESTINATIONS_ACCOUNTS": json.dumps(table)})

    # then: A's row names its role and the identity got; B's is the line a replay would say
    trusted, refused = rows[f"account {OTHER}"], rows["account 444455556666"]
    assert trusted["status"] == "ok", trusted
    assert trusted["detail"].startswith(f"{ROLE} assumed (arn:aws:sts::{OTHER}:assumed-role/")
    assert refused["status"] == "error"
    assert refused["detail"].startswith(
        f"AssumeRole refused (AccessDenied): cannot assume {refusing}, the role of "
        "accounts.444455556666: "
    )
    assert refused["fix"] == (
        "the role's trust policy must let the worker's role assume it (sts:AssumeRole), and the "
        f"worker's credentials must be allowed sts:AssumeRole on {refusing}"
    )
    assert accounts.assumed == [ROLE]


def test_doctor_says_a_role_whose_credentials_are_another_accounts(
    accounts: AccountsEndpoint, env: dict[str, str]
) -> None:
    # given: an endpoint that says every assumed role is of its one account (an emulator's way)
    accounts.said_account[OTHER] = OWN

    # when
    rows = doctor_rows(
        {**env, "LAMBDA_DESTINATIONS_ACCOUNTS": json.dumps({OTHER: {"role_arn": ROLE}})}
    )

    # then
    row = rows[f"account {OTHER}"]
    assert row["status"] == "error"
    assert row["detail"] == (
        f"{ROLE} was assumed, but its credentials are account {OWN}'s: Lambda calls made with "
        f"them are not made in account {OTHER}"
    )
    assert row["fix"] == (
        f"check accounts.{OTHER}.role_arn; {accounts.url} may be an emulator that keeps every "
        "role in one account"
    )


def test_doctor_says_two_accounts_queues_of_one_name_and_their_dlqs_of_one_name(
    accounts: AccountsEndpoint, env: dict[str, str]
) -> None:
    # given: "orders" in two accounts, each with its DLQ "orders-dlq"; and in a third account
    # "billing", whose DLQ "orders-dlq" is a fourth queue of that name
    made: list[tuple[str, str]] = []
    for account, name in ((OTHER, "orders"), ("444455556666", "orders"), (OWN, "billing")):
        sqs = accounts.sqs_of(account)
        dlq = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
        policy = {"deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{account}:orders-dlq"}
        attributes = {"RedrivePolicy": json.dumps({**policy, "maxReceiveCount": "5"})}
        made += [
            (account, dlq),
            (account, sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]),
        ]
    one, other, billing = (url for _account, url in made[1::2])
    try:
        # when
        rows = doctor_rows({**env, "LAMBDA_DESTINATIONS_QUEUES": f"{one},{other},{billing}"})
    finally:
        for account, url in made:
            accounts.sqs_of(account).delete_queue(QueueUrl=url)

    # then: the refusal the worker's start would say, for the queues and for the DLQs
    named = rows["queue orders: name"]
    assert named["status"] == "error"
    assert named["detail"] == (
        f"queues {one!r} and {other!r} are two queues named orders, of accounts {OTHER} and "
        "444455556666, which the worker tells apart by name only (the queue label of its "
        "metrics, its log lines, /readyz)"
    )
    assert (
        named["fix"]
        == "poll them with a worker each (each with its own LAMBDA_DESTINATIONS_QUEUES)"
    )
    dlqs = rows["billing: dead-letter queue"]
    assert dlqs["status"] == "error"
    assert dlqs["detail"].startswith(
        f"the DLQs of orders and billing are two queues named orders-dlq, of accounts {OTHER} "
        f"and {OWN}, "
    )


def test_a_role_with_no_credentials_to_assume_it_is_no_credentials_not_in_doubt(
    accounts: AccountsEndpoint, env: dict[str, str], sqlite_url: str
) -> None:
    # given: a role for the function's account, and no AWS credentials to assume it with
    row, roles = seeded_with_role(sqlite_url)
    none = {
        "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip

    # when
    result = cli(
        "replay", row.request_id or "", "--yes", "--json",
        env={**env, **none, "LAMBDA_DESTINATIONS_ACCOUNTS": roles},
    )  # fmt: skip

    # then: refused for want of credentials, as a function of our own account is (exit 3,
    # the fix), not an Invoke in doubt after an AttributeError: nothing was sent
    assert result.returncode == 3, result.stderr
    (outcome,) = json.loads(result.stdout)["results"]
    assert (outcome["error"], outcome["detail"]) == (
        "refused",
        "NoCredentialsError: Unable to locate credentials",
    )
    assert error_lines(result) == [
        "error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE, or run with a role"
    ]
    assert "AttributeError" not in result.stderr + result.stdout
    assert (accounts.assumed, accounts.invoked) == ([], [])
    assert state(sqlite_url, row) == (FailureStatus.OPEN, [ReplayOutcome.ERROR])


def test_sts_cut_off_while_assuming_a_role_leaves_no_invoke_in_doubt(
    accounts: AccountsEndpoint, env: dict[str, str], sqlite_url: str
) -> None:
    # given: STS that closes the connection on the AssumeRole of the account's role
    row, roles = seeded_with_role(sqlite_url)
    replay = ("replay", row.request_id or "", "--yes", "--json")
    env = {**env, "LAMBDA_DESTINATIONS_ACCOUNTS": roles}
    accounts.cut_off.add(ROLE)

    # when
    result = cli(*replay, env=env)

    # then: STS unreachable (exit 4), the role named; the Invoke was never sent, so it is not
    # in doubt, and botocore's warning of the failed refresh is not said too
    assert result.returncode == 4, result.stderr
    (outcome,) = json.loads(result.stdout)["results"]
    assert outcome["error"] == "refused", outcome
    said = f"cannot assume {ROLE}, the role of accounts.{OTHER}: STS did not answer ("
    assert said in outcome["detail"]
    assert "may have reached Lambda" not in result.stderr
    assert "Refreshing temporary credentials failed" not in result.stderr
    assert accounts.invoked == []
    assert state(sqlite_url, row) == (FailureStatus.OPEN, [ReplayOutcome.ERROR])

    # and: once STS answers, a replay again invokes it (no --force: it was not in doubt)
    accounts.cut_off.clear()
    again = cli(*replay, env=env)
    assert again.returncode == 0, again.stderr
    assert accounts.invoked == [(FUNCTION, OTHER)]
