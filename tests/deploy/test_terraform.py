"""deploy/terraform: ``terraform fmt -check`` and ``terraform validate`` where the machine has a
terraform binary (and, for validate, a local mirror of the AWS provider: no registry is reachable
offline), and python-hcl2 assertions that the module declares what the CloudFormation template
does: the same queues, destinations, environment and IAM actions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import TERRAFORM, load_template, load_terraform

from lambda_destinations.config import Settings

# Where a filesystem mirror of registry.terraform.io providers may be (the layout
# `terraform providers mirror` writes); LAMBDA_DESTINATIONS_TF_MIRROR overrides.
MIRROR = Path(os.environ.get("LAMBDA_DESTINATIONS_TF_MIRROR", "/opt/tf-plugins"))
AWS_PROVIDER = MIRROR / "registry.terraform.io" / "hashicorp" / "aws"

# CloudFormation's queues and their Terraform names.
QUEUES = {
    "SuccessQueue": "success",
    "FailureQueue": "failure",
    "SuccessDeadLetterQueue": "success_dlq",
    "FailureDeadLetterQueue": "failure_dlq",
}
# CloudFormation parameters and their Terraform variables.
PARAMETERS = {
    "ImageUri": "image_uri",
    "FunctionNames": "function_names",
    "FunctionQualifier": "function_qualifier",
    "RecordBuckets": "record_buckets",
    "FunctionRoleArns": "function_role_arns",
    "MaximumRetryAttempts": "maximum_retry_attempts",
    "Subnets": "subnet_ids",
    "SecurityGroups": "security_group_ids",
    "AssignPublicIp": "assign_public_ip",
    "StoreSecretArn": "store_secret_arn",
    "DesiredCount": "desired_count",
    "MinCount": "min_count",
    "MaxCount": "max_count",
    "BacklogPerTask": "backlog_per_task",
    "Routes": "routes",
    "Handlers": "handlers",
    "HandlerSecretArn": "handler_secret_arn",
    "SmsEnabled": "sms_enabled",
    "EmailIdentityArns": "email_identity_arns",
    "Accounts": "accounts",
    "AccountRoleArns": "account_role_arns",
    "VisibilityTimeout": "visibility_timeout",
    "MaxReceiveCount": "max_receive_count",
    "AlarmTopicArn": "alarm_topic_arn",
    "OldestMessageAgeThreshold": "oldest_message_age_threshold",
}
TERRAFORM_ONLY = {"name", "tags"}


@pytest.fixture(scope="module")
def module() -> dict[str, dict[str, Any]]:
    return load_terraform()


def _terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.skip("no terraform binary on this machine (fmt and validate need one)")
    return found


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )


def test_terraform_fmt_check() -> None:
    terraform = _terraform()
    result = _run(terraform, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM), cwd=TERRAFORM)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_terraform_validate_with_the_local_provider_mirror(tmp_path: Path) -> None:
    terraform = _terraform()
    if not AWS_PROVIDER.is_dir():
        pytest.skip(
            f"no hashicorp/aws provider in a local mirror ({AWS_PROVIDER}); the registry is "
            "unreachable offline, so `terraform init` cannot get one"
        )
    # given: the module copied out (init writes .terraform/ beside it) and a CLI config that
    # installs providers from the mirror only
    work = tmp_path / "module"
    shutil.copytree(TERRAFORM, work, ignore=shutil.ignore_patterns(".terraform*", "*.md"))
    config = tmp_path / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{MIRROR}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_DATA_DIR": str(tmp_path / "data"),
    }
    # when
    init = _run(terraform, "init", "-backend=false", "-input=false", "-no-color", cwd=work, env=env)
    assert init.returncode == 0, init.stdout + init.stderr
    validate = _run(terraform, "validate", "-no-color", cwd=work, env=env)
    # then
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "Success! The configuration is valid." in validate.stdout
    assert "Warning" not in validate.stdout + validate.stderr


# -- the same resources as the CloudFormation template ---------------------------------------------


def test_the_module_declares_the_templates_queues(module: dict[str, dict[str, Any]]) -> None:
    template = load_template()["Resources"]
    queues = module["resource"]["aws_sqs_queue"]
    assert set(queues) == set(QUEUES.values())
    for logical, name in QUEUES.items():
        cfn = template[logical]["Properties"]
        tf = queues[name]
        assert tf["sqs_managed_sse_enabled"] is cfn["SqsManagedSseEnabled"] is True
        assert tf["message_retention_seconds"] == cfn["MessageRetentionPeriod"]
        if "RedrivePolicy" in cfn:
            dlq = QUEUES[cfn["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
            assert re.search(
                rf"deadLetterTargetArn\s*=\s*aws_sqs_queue\.{dlq}\.arn", tf["redrive_policy"]
            )
            assert "maxReceiveCount = var.max_receive_count" in tf["redrive_policy"]
        else:
            assert "redrive_policy" not in tf
    policies = module["resource"]["aws_sqs_queue_policy"]
    assert {p["queue_url"] for p in policies.values()} == {
        "${aws_sqs_queue.success.id}",
        "${aws_sqs_queue.failure.id}",
    }


def test_the_module_wires_each_function_to_the_queues(module: dict[str, dict[str, Any]]) -> None:
    (config,) = module["resource"]["aws_lambda_function_event_invoke_config"].values()
    assert config["for_each"] == "${toset(var.function_names)}"
    assert config["function_name"] == "${each.value}"
    (destinations,) = config["destination_config"]
    assert destinations["on_success"][0]["destination"] == "${aws_sqs_queue.success.arn}"
    assert destinations["on_failure"][0]["destination"] == "${aws_sqs_queue.failure.arn}"


def test_the_module_scales_on_backlog_per_task(module: dict[str, dict[str, Any]]) -> None:
    (policy,) = module["resource"]["aws_appautoscaling_policy"].values()
    assert policy["policy_type"] == "TargetTrackingScaling"
    (configuration,) = policy["target_tracking_scaling_policy_configuration"]
    assert configuration["target_value"] == "${var.backlog_per_task}"
    (specification,) = configuration["customized_metric_specification"]
    metrics = {m["id"]: m for m in specification["metrics"]}
    (returned,) = [m for m in metrics.values() if m["return_data"]]
    cfn = load_template()["Resources"]["BacklogPerTaskPolicy"]["Properties"]
    cfn_metrics = cfn["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"][
        "Metrics"
    ]
    assert set(metrics) == {m["Id"] for m in cfn_metrics}
    (cfn_returned,) = [m for m in cfn_metrics if m["ReturnData"]]
    assert returned["expression"] == cfn_returned["Expression"]
    for metric_id, queue in (("success", "success"), ("failure", "failure")):
        (stat,) = metrics[metric_id]["metric_stat"]
        (metric,) = stat["metric"]
        assert metric["metric_name"] == "ApproximateNumberOfMessagesVisible"
        assert metric["dimensions"][0]["value"] == f"${{aws_sqs_queue.{queue}.name}}"
    (tasks,) = metrics["tasks"]["metric_stat"]
    assert tasks["metric"][0]["metric_name"] == "RunningTaskCount"
    (cluster,) = module["resource"]["aws_ecs_cluster"].values()
    assert cluster["setting"][0] == {"name": "containerInsights", "value": "enabled"}


def test_the_task_definition_matches_the_template(module: dict[str, dict[str, Any]]) -> None:
    template = load_template()["Resources"]["TaskDefinition"]["Properties"]
    (container,) = template["ContainerDefinitions"]
    cfn_environment = {e["Name"] for e in container["Environment"]}
    local = module["locals"]
    assert set(local["environment"]) == cfn_environment
    assert local["shutdown_grace"] == Settings.model_fields["shutdown_grace"].default
    (definition,) = module["resource"]["aws_ecs_task_definition"].values()
    body = definition["container_definitions"]
    assert "stopTimeout = local.shutdown_grace + 10" in body
    assert local["shutdown_grace"] + 10 == container["StopTimeout"]
    assert "readonlyRootFilesystem = true" in body
    assert container["LinuxParameters"] == {"Capabilities": {"Drop": ["ALL"]}}
    assert 'linuxParameters = {capabilities = {drop = ["ALL"]}}' in body
    assert '[{name = "LAMBDA_DESTINATIONS_STORE", valueFrom = var.store_secret_arn}]' in body
    assert '[{name = "LAMBDA_DESTINATIONS_SECRETS", valueFrom = var.handler_secret_arn}]' in body


def test_variables_and_outputs_are_documented(module: dict[str, dict[str, Any]]) -> None:
    variables = module["variable"]
    assert set(variables) == set(PARAMETERS.values()) | TERRAFORM_ONLY
    assert set(PARAMETERS) == set(load_template()["Parameters"])
    readme = (TERRAFORM / "README.md").read_text()
    for name, body in variables.items():
        assert body.get("description"), f"variable {name} has no description"
        assert f"`{name}`" in readme, f"variable {name} is not in deploy/terraform/README.md"
    cfn_outputs = load_template()["Outputs"]
    assert len(module["output"]) == len(cfn_outputs)
    for name, body in module["output"].items():
        assert body.get("description"), f"output {name} has no description"
        assert f"`{name}`" in readme, f"output {name} is not in deploy/terraform/README.md"


# -- alarms ------------------------------------------------------------------------------------

# The template's alarms and the module's (a for_each key where there is one per queue).
ALARMS = {
    "SuccessDeadLetterQueueNotEmptyAlarm": ("dlq_not_empty", "success"),
    "FailureDeadLetterQueueNotEmptyAlarm": ("dlq_not_empty", "failure"),
    "SuccessQueueNotDrainingAlarm": ("queue_not_draining", "success"),
    "FailureQueueNotDrainingAlarm": ("queue_not_draining", "failure"),
    "NoRunningTaskAlarm": ("no_running_task", None),
}
# (CloudFormation property, Terraform argument) that must agree, as written.
ALARM_SETTINGS = {
    "Namespace": "namespace",
    "MetricName": "metric_name",
    "Statistic": "statistic",
    "Period": "period",
    "EvaluationPeriods": "evaluation_periods",
    "DatapointsToAlarm": "datapoints_to_alarm",
    "ComparisonOperator": "comparison_operator",
    "TreatMissingData": "treat_missing_data",
}


def _placeholders_out(text: str) -> str:
    """A description with its interpolations (``${…}``) blanked and HCL's escapes undone."""
    return re.sub(r"\$\{[^}]+\}", "{}", text.replace('\\"', '"'))


def _tf_dimension(
    module: dict[str, dict[str, Any]], tf_alarm: dict[str, Any], key: str | None
) -> dict[str, str]:
    """The alarm's dimensions, its ``each.value`` resolved to the for_each map's value."""
    dimensions: dict[str, str] = dict(tf_alarm["dimensions"])
    if key is not None:
        local = tf_alarm["for_each"].removeprefix("${local.").removesuffix("}")
        queues = module["locals"][local]
        dimensions = {k: queues[key] if v == "${each.value}" else v for k, v in dimensions.items()}
    return dimensions


def test_the_module_declares_the_templates_alarms(module: dict[str, dict[str, Any]]) -> None:
    template = load_template()["Resources"]
    alarm = "AWS::CloudWatch::Alarm"
    cfn_alarms = {k for k, v in template.items() if isinstance(v, dict) and v["Type"] == alarm}
    assert cfn_alarms == set(ALARMS)
    tf_alarms = module["resource"]["aws_cloudwatch_metric_alarm"]
    assert set(tf_alarms) == {name for name, _key in ALARMS.values()}
    names = {f"${{aws_sqs_queue.{tf}.name}}": cfn for cfn, tf in QUEUES.items()}
    for logical, (name, key) in ALARMS.items():
        cfn = template[logical]["Properties"]
        tf = tf_alarms[name]
        for cfn_name, tf_name in ALARM_SETTINGS.items():
            assert tf.get(tf_name) == cfn.get(cfn_name), (logical, tf_name)
        # the same queue, or the same cluster and service
        dimensions = _tf_dimension(module, tf, key)
        if "QueueName" in dimensions:
            assert names[dimensions["QueueName"]] == cfn["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
            assert "${each.key}" in tf["alarm_name"]
        else:
            assert dimensions == {
                "ClusterName": "${aws_ecs_cluster.this.name}",
                "ServiceName": "${aws_ecs_service.worker.name}",
            }
        # the same words, the same advice
        assert _placeholders_out(tf["alarm_description"]) == _placeholders_out(
            cfn["AlarmDescription"]["Fn::Sub"]
        ), logical
        threshold = cfn["Threshold"]
        if isinstance(threshold, dict):
            assert tf["threshold"] == f"${{var.{PARAMETERS[threshold['Ref']]}}}"
        else:
            assert tf["threshold"] == threshold
        assert tf["alarm_actions"] == tf["ok_actions"] == "${local.alarm_actions}"


def test_the_alarms_notify_the_topic_only_when_one_is_given(
    module: dict[str, dict[str, Any]],
) -> None:
    assert module["locals"]["alarm_actions"] == (
        '${var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]}'
    )
    variable = module["variable"]["alarm_topic_arn"]
    assert variable["default"] == ""
    threshold = module["variable"]["oldest_message_age_threshold"]
    assert (
        threshold["default"]
        == load_template()["Parameters"]["OldestMessageAgeThreshold"]["Default"]
    )


def test_the_failure_queue_policy_lets_s3_send_from_the_record_buckets_only(
    module: dict[str, dict[str, Any]],
) -> None:
    policy = module["data"]["aws_iam_policy_document"]["destination_queue"]
    (s3,) = [
        d["statement"]
        for d in policy["dynamic"]
        if d["statement"]["content"][0]["principals"][0]["type"] == "Service"
    ]
    # only on the failure queue, and only when buckets are given
    assert s3["for_each"] == '${each.key == "failure" && length(var.record_buckets) > 0 ? [1] : []}'
    (content,) = s3["content"]
    assert content["actions"] == ["sqs:SendMessage"]
    assert content["principals"] == [{"type": "Service", "identifiers": ["s3.amazonaws.com"]}]
    assert {c["variable"]: (c["test"], c["values"]) for c in content["condition"]} == {
        "aws:SourceArn": (
            "ArnLike",
            '${[for bucket in var.record_buckets : "arn:${data.aws_partition.current.partition}'
            ':s3:::${bucket}"]}',
        ),
        "aws:SourceAccount": ("StringEquals", ["${data.aws_caller_identity.current.account_id}"]),
    }


def _validated_bounds(name: str, variable: dict[str, Any]) -> tuple[float | None, float | None]:
    """The least and the most a number variable's validations let through (None: no bound);
    every clause must be ``var.NAME >= N`` or ``var.NAME <= N``, joined by ``&&``."""
    lower = upper = None
    for validation in variable.get("validation", []):
        condition = validation["condition"].removeprefix("${").removesuffix("}")
        for clause in condition.split("&&"):
            found = re.fullmatch(rf"\s*var\.{name}\s*(>=|<=)\s*(\d+)\s*", clause)
            assert found, f"{name}: a validation clause this test cannot read: {clause!r}"
            bound = float(found.group(2))
            if found.group(1) == ">=":
                lower = bound if lower is None else max(lower, bound)
            else:
                upper = bound if upper is None else min(upper, bound)
    return lower, upper


def test_each_number_variable_refuses_what_the_templates_parameter_refuses(
    module: dict[str, dict[str, Any]],
) -> None:
    # Before: visibility_timeout, max_receive_count and the counts had no validation, so the
    # module took a maxReceiveCount of 1 (no retry: doctor's error) the template refused.
    parameters = load_template()["Parameters"]
    numbers = [p for p in PARAMETERS if parameters[p]["Type"] == "Number"]
    assert numbers
    for parameter in numbers:
        name = PARAMETERS[parameter]
        assert module["variable"][name]["type"] == "number", name
        expected = (parameters[parameter].get("MinValue"), parameters[parameter].get("MaxValue"))
        assert _validated_bounds(name, module["variable"][name]) == expected, name


# Values a user may give where the template asks for an ARN: ARNs of each kind, and names.
GIVEN = (
    "",
    "ld-store",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ld-store-AbCdEf",
    "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:ld-store-AbCdEf",
    "arn:aws:sns:us-east-1:123456789012:alarms",
    "arn:aws:ssm:us-east-1:123456789012:parameter/ld-store",
)


def _validation_passes(name: str, variable: dict[str, Any], value: str) -> bool:
    """Whether every validation of a string variable passes for ``value``: each condition is
    clauses ``var.NAME == ""`` or ``can(regex("PATTERN", var.NAME))``, joined by ``||``."""
    for validation in variable.get("validation", []):
        condition = validation["condition"].removeprefix("${").removesuffix("}")
        passed = False
        for clause in condition.split("||"):
            clause = clause.strip()
            pattern = re.fullmatch(rf'can\(regex\("(.+)", var\.{name}\)\)', clause)
            if clause == f'var.{name} == ""':
                passed = passed or value == ""
            else:
                assert pattern, f"{name}: a validation clause this test cannot read: {clause!r}"
                passed = passed or re.search(pattern.group(1), value) is not None
        if not passed:
            return False
    return True


def test_each_arn_variable_refuses_what_the_templates_parameter_refuses(
    module: dict[str, dict[str, Any]],
) -> None:
    # Before: store_secret_arn took a secret's name, and the apply failed on the IAM policy
    # AWS refused (a Resource not in ARN format), naming no variable.
    parameters = load_template()["Parameters"]
    patterned = [p for p in PARAMETERS if "AllowedPattern" in parameters[p]]
    assert patterned
    for parameter in patterned:
        name = PARAMETERS[parameter]
        allowed = parameters[parameter]["AllowedPattern"]
        for value in GIVEN:
            expected = re.fullmatch(allowed, value) is not None
            passes = _validation_passes(name, module["variable"][name], value)
            assert passes == expected, (name, value)
