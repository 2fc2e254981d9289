"""The deploy templates grant the worker exactly what aws_operations lists: each action on the
resources it is used on, and nothing beyond."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_helpers import (
    KUBERNETES,
    expand_foreach,
    load_template,
    load_terraform,
    readme_operator_table,
    resolve_conditions,
    terraform_statements,
)

from lambda_destinations.aws_operations import Scope, Target, operations, worker_actions

FUNCTIONS = ["orders-api", "billing_worker"]
RECORD_BUCKETS = ["orders-failures", "billing.records"]
ALL_ON = {
    "HasRecordBuckets": True,
    "HasFunctionRoles": True,
    "SmsOn": True,
    "EmailOn": True,
    "HasAlarmTopic": True,
    "HasAccountRoles": True,
    "HasHandlerSecret": True,
}


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _function_arns(names: list[str]) -> set[str]:
    prefix = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
    return {_key({"Fn::Sub": f"{prefix}{name}{tail}"}) for name in names for tail in ("", ":*")}


# Each target kind as the CloudFormation template names its resources.
CFN_RESOURCES: dict[Target, set[str]] = {
    Target.QUEUE: {
        _key({"Fn::GetAtt": ["SuccessQueue", "Arn"]}),
        _key({"Fn::GetAtt": ["FailureQueue", "Arn"]}),
    },
    Target.DLQ: {
        _key({"Fn::GetAtt": ["SuccessDeadLetterQueue", "Arn"]}),
        _key({"Fn::GetAtt": ["FailureDeadLetterQueue", "Arn"]}),
    },
    Target.FUNCTION: _function_arns(FUNCTIONS),
    Target.SMS: {_key("*")},
    Target.EMAIL_IDENTITY: {_key({"Ref": "EmailIdentityArns"})},
    Target.ACCOUNT_ROLE: {_key({"Ref": "AccountRoleArns"})},
    Target.RECORD_BUCKET: {
        _key({"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}/aws/lambda/*"})
        for bucket in RECORD_BUCKETS
    },
    Target.ECS_TASK: {
        _key(
            {
                "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}"
                ":task/${Cluster}/*"
            }
        )
    },
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return _as_list(document["Statement"])


def cfn_task_role_grants(conditions: dict[str, bool]) -> dict[str, set[str]]:
    """action -> resources, over the task role's inline policies and the RolePolicy resources
    attached to it (the ForEach expanded, the conditions resolved)."""
    lists = {"FunctionNames": FUNCTIONS, "RecordBuckets": RECORD_BUCKETS}
    template = resolve_conditions(expand_foreach(load_template(), lists), conditions)
    resources = {
        name: resource
        for name, resource in template["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    documents = [p["PolicyDocument"] for p in resources["TaskRole"]["Properties"]["Policies"]]
    documents += [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy")
        and {"Ref": "TaskRole"}
        in _as_list(r["Properties"].get("RoleName")) + _as_list(r["Properties"].get("Roles", []))
    ]
    assert "ManagedPolicyArns" not in resources["TaskRole"]["Properties"]
    grants: dict[str, set[str]] = {}
    for document in documents:
        for statement in _statements(document):
            assert statement["Effect"] == "Allow"
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"wildcard action {action}"
                grants.setdefault(action, set()).update(
                    _key(r) for r in _as_list(statement["Resource"])
                )
    return grants


def expected(resources_of: dict[Target, set[str]]) -> dict[str, set[str]]:
    return {
        action: set().union(*(resources_of[target] for target in targets))
        for action, targets in worker_actions().items()
    }


def test_the_task_role_grants_exactly_the_worker_operations_on_their_resources() -> None:
    assert cfn_task_role_grants(ALL_ON) == expected(CFN_RESOURCES)


@pytest.mark.parametrize(
    ("condition", "action"),
    [
        ("SmsOn", "sns:Publish"),
        ("EmailOn", "ses:SendEmail"),
        ("HasAccountRoles", "sts:AssumeRole"),
        ("HasRecordBuckets", "s3:GetObject s3:GetObjectVersion"),
    ],
)
def test_notification_permissions_only_when_asked_for(condition: str, action: str) -> None:
    grants = cfn_task_role_grants({**ALL_ON, condition: False})
    assert not set(action.split()) & set(grants)
    assert set(grants) == set(expected(CFN_RESOURCES)) - set(action.split())


def test_the_records_of_a_versioned_bucket_are_readable_where_the_templates_grant_reads() -> None:
    # S3 checks s3:GetObjectVersion, not s3:GetObject, for a GetObject naming the version a
    # notice of a versioned bucket gives (before: s3:GetObject alone, every read refused)
    cfn = cfn_task_role_grants(ALL_ON)
    tf = tf_task_role_grants()
    irsa = _document_grants(json.loads((KUBERNETES / "iam-policy.json").read_text()))
    for grants in (cfn, tf, irsa):
        assert grants["s3:GetObjectVersion"] == grants["s3:GetObject"]
    assert "s3:GetObjectVersion" not in cfn_task_role_grants({**ALL_ON, "HasRecordBuckets": False})


def test_the_execution_role_reads_only_the_store_and_handlers_secrets() -> None:
    role = load_template()["Resources"]["ExecutionRole"]["Properties"]
    (policy,) = role["Policies"]
    (statement,) = _statements(policy["PolicyDocument"])
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == [
        {"Ref": "StoreSecretArn"},
        {"Fn::If": ["HasHandlerSecret", {"Ref": "HandlerSecretArn"}, {"Ref": "AWS::NoValue"}]},
    ]
    assert role["ManagedPolicyArns"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
            "AmazonECSTaskExecutionRolePolicy"
        }
    ]


def test_every_worker_action_names_a_resource_kind_the_templates_know() -> None:
    for action, targets in worker_actions().items():
        assert targets <= set(CFN_RESOURCES), f"{action}: no template resource for {targets}"


# The IRSA policy of the Kubernetes manifests, with its example ARNs.
IRSA_RESOURCES: dict[Target, set[str]] = {
    Target.QUEUE: {
        _key(f"arn:aws:sqs:us-east-1:123456789012:lambda-destinations-{name}")
        for name in ("success", "failure")
    },
    Target.DLQ: {
        _key(f"arn:aws:sqs:us-east-1:123456789012:lambda-destinations-{name}-dlq")
        for name in ("success", "failure")
    },
    Target.FUNCTION: {
        _key(f"arn:aws:lambda:us-east-1:123456789012:function:orders-api{tail}")
        for tail in ("", ":*")
    },
    Target.SMS: {_key("*")},
    Target.EMAIL_IDENTITY: {_key("arn:aws:ses:us-east-1:123456789012:identity/example.com")},
    Target.ACCOUNT_ROLE: {_key("arn:aws:iam::111122223333:role/lambda-destinations-invoke")},
    Target.RECORD_BUCKET: {_key("arn:aws:s3:::orders-failure-records/aws/lambda/*")},
}


def _document_grants(document: dict[str, Any]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for statement in _statements(document):
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
        for action in _as_list(statement["Action"]):
            grants.setdefault(action, set()).update(
                _key(r) for r in _as_list(statement["Resource"])
            )
    return grants


def test_the_irsa_policy_grants_the_worker_operations_but_ecs_protection() -> None:
    document = json.loads((KUBERNETES / "iam-policy.json").read_text())
    wanted = {
        action: targets
        for action, targets in worker_actions().items()
        if targets != {Target.ECS_TASK}  # scale-in protection is ECS's alone
    }
    assert _document_grants(document) == {
        action: set().union(*(IRSA_RESOURCES[t] for t in targets))
        for action, targets in wanted.items()
    }


# -- the Terraform module -------------------------------------------------------------------------

TF_RESOURCES: dict[Target, set[str]] = {
    Target.QUEUE: {_key("${aws_sqs_queue.success.arn}"), _key("${aws_sqs_queue.failure.arn}")},
    Target.DLQ: {
        _key("${aws_sqs_queue.success_dlq.arn}"),
        _key("${aws_sqs_queue.failure_dlq.arn}"),
    },
    Target.FUNCTION: {
        _key(
            '${flatten([for function in var.function_names : ["${local.function_arn_prefix}'
            '${function}", "${local.function_arn_prefix}${function}:*"]])}'
        )
    },
    Target.SMS: {_key("*")},
    Target.EMAIL_IDENTITY: {_key("${var.email_identity_arns}")},
    Target.ACCOUNT_ROLE: {_key("${var.account_role_arns}")},
    Target.RECORD_BUCKET: {
        _key(
            '${[for bucket in var.record_buckets : "arn:${data.aws_partition.current.partition}'
            ':s3:::${bucket}/aws/lambda/*"]}'
        )
    },
    Target.ECS_TASK: {
        _key(
            "arn:${data.aws_partition.current.partition}:ecs:${data.aws_region.current.name}:"
            "${data.aws_caller_identity.current.account_id}:task/${aws_ecs_cluster.this.name}/*"
        )
    },
}


def tf_task_role_grants() -> dict[str, set[str]]:
    module = load_terraform()
    role_policies = module["resource"]["aws_iam_role_policy"]
    on_task = [p for p in role_policies.values() if p["role"] == "${aws_iam_role.task.id}"]
    assert [p["policy"] for p in on_task] == ["${data.aws_iam_policy_document.worker.json}"]
    assert not any(
        a["role"] == "${aws_iam_role.task.name}"
        for a in module["resource"].get("aws_iam_role_policy_attachment", {}).values()
    ), "no managed policy on the task role"
    document = module["data"]["aws_iam_policy_document"]["worker"]
    grants: dict[str, set[str]] = {}
    for statement in terraform_statements(document):
        assert statement.get("effect", "Allow") == "Allow"
        assert set(statement) <= {"sid", "actions", "resources"}, statement
        for action in statement["actions"]:
            assert "*" not in action
            grants.setdefault(action, set()).update(
                _key(r) for r in _as_list(statement["resources"])
            )
    return grants


def test_the_terraform_policy_grants_exactly_the_worker_operations() -> None:
    assert tf_task_role_grants() == expected(TF_RESOURCES)


def test_terraform_and_cloudformation_grant_the_same_actions() -> None:
    assert set(tf_task_role_grants()) == set(cfn_task_role_grants(ALL_ON))


def test_the_readme_gives_each_worker_action_its_reason() -> None:
    readme = (KUBERNETES.parents[1] / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {row.split("`")[1] for row in rows}
    assert set(worker_actions()) <= listed


def _commands_named(reason: str, commands: list[str]) -> set[str]:
    """The table's commands a reason names: `dlq redrive --reinvoke` is `dlq redrive`, `dlq`
    each dlq command."""
    named = re.findall(r"`([^`]+)`", reason)
    return {
        command
        for command in commands
        for token in named
        if f"{token} ".startswith(f"{command} ") or command.startswith(f"{token} ")
    }


def test_the_readme_lists_each_operator_command_with_every_action_it_needs() -> None:
    table = readme_operator_table()
    missing = []
    for op in operations(Scope.OPERATOR):
        commands = _commands_named(op.reason, list(table))
        assert commands, f"{op.operation}: its reason names no command of the README's table"
        for action in op.actions:
            missing += [f"{c}: {action}" for c in commands if f"`{action}`" not in table[c]]
    assert not missing


def test_the_readme_says_a_configuration_set_needs_the_email_permission_too() -> None:
    # SES v2 checks ses:SendEmail on the configuration set a send names, as on the identity
    readme = (KUBERNETES.parents[1] / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| `SmsEnabled`, `Email")]
    assert ":configuration-set/" in row
    (grant,) = [line for line in readme.splitlines() if line.startswith("| `ses:SendEmail` |")]
    assert "configuration set" in grant


def test_the_readme_names_every_secret_the_execution_role_reads() -> None:
    # Before: "on the store secret only", though the role reads the handlers' secret too.
    statement = load_template()["Resources"]["ExecutionRole"]["Properties"]["Policies"][0]
    granted = json.dumps(statement["PolicyDocument"])
    parameters = set(re.findall(r'"Ref": "(\w+)"', granted)) - {"AWS::NoValue"}
    assert parameters == {"StoreSecretArn", "HandlerSecretArn"}
    readme = (KUBERNETES.parents[1] / "README.md").read_text()
    paragraph = readme.split("\nThe execution role (ECS itself", 1)[1].split("\n\n", 1)[0]
    paragraph = " ".join(paragraph.split())
    variables = load_terraform()["variable"]
    for parameter in parameters:
        assert f"`{parameter}`" in paragraph
        # and the Terraform module's variable of the same secret
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).lower()
        assert snake in variables
        assert f"`{snake}`" in paragraph
