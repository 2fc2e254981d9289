"""deploy/cloudformation: cfn-lint, a stack created in the moto server, and what moto ignores
(EventInvokeConfig destinations, Application Auto Scaling) checked on the parsed template."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from deploy_helpers import (
    README,
    TEMPLATE,
    expand_foreach,
    load_manifests,
    load_template,
    resolve_conditions,
    resolve_references,
)

from lambda_destinations.config import ENV_PREFIX, Settings, load_settings
from lambda_destinations.operations.doctor import Doctor, retry_delays

REGION = "us-east-1"
FUNCTIONS = ["orders-api", "billing_worker"]


def _container(template: dict[str, Any]) -> dict[str, Any]:
    definitions = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert len(definitions) == 1
    container: dict[str, Any] = definitions[0]
    return container


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in container["Environment"]}


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    resources = template["Resources"].items()
    return {k: v for k, v in resources if isinstance(v, dict) and v["Type"] == kind}


def test_cfn_lint_passes() -> None:
    # I3011 (informational, off by default): every stateful resource says what becomes of it
    # when the stack is deleted or the resource replaced, rather than CloudFormation's delete.
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I3011", "--format", "parseable", str(TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- created in moto --------------------------------------------------------------------------


@pytest.fixture
def network(endpoint_url: str) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint_url)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"ld-{uuid.uuid4().hex[:6]}", Description="t", VpcId=vpc
    )
    secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint_url)
    secret = secrets.create_secret(
        Name=f"ld-store-{uuid.uuid4().hex[:6]}", SecretString="postgresql://ld:pw@db:5432/ld"
    )["ARN"]
    return {"subnet": subnet, "group": group["GroupId"], "secret": secret}


# moto warns for each resource type it does not create (QueuePolicy, EventInvokeConfig,
# RolePolicy, Application Auto Scaling, CloudWatch alarms): those are checked on the parsed
# template below; the alarms also by creating them, resolved against the stack, in moto.
MOTO_SKIPS = "ignore:Tried to parse AWS:UserWarning"


@contextlib.contextmanager
def _created_stack(
    endpoint_url: str, network: dict[str, str], **extra: str
) -> Iterator[dict[str, Any]]:
    """The template (ForEach expanded, as AWS::LanguageExtensions would) created in moto, with
    these parameters besides the required ones."""
    parameters = {
        "ImageUri": "registry.example.com/lambda-destinations:1.0",
        "FunctionNames": ",".join(FUNCTIONS),
        "Subnets": network["subnet"],
        "SecurityGroups": network["group"],
        "StoreSecretArn": network["secret"],
        "MaxReceiveCount": "7",
        **extra,
    }
    lists = {"FunctionNames": FUNCTIONS}
    if "RecordBuckets" in extra:
        lists["RecordBuckets"] = extra["RecordBuckets"].split(",")
    body = expand_foreach(load_template(), lists)
    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=endpoint_url)
    name = f"ld-{uuid.uuid4().hex[:8]}"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    resources = {
        r["LogicalResourceId"]: r
        for r in cloudformation.describe_stack_resources(StackName=name)["StackResources"]
        if "LogicalResourceId" in r  # moto lists the types it skipped without one
    }
    try:
        yield {"stack": described, "resources": resources, "parameters": parameters}
    finally:
        cloudformation.delete_stack(StackName=name)
        _delete_retained_queues(endpoint_url, resources)


@pytest.fixture
def stack(endpoint_url: str, network: dict[str, str]) -> Iterator[dict[str, Any]]:
    with _created_stack(endpoint_url, network) as created:
        yield created


def _delete_retained_queues(endpoint_url: str, resources: dict[str, Any]) -> None:
    """Delete the queues the stack's deletion leaves (DeletionPolicy: Retain), if still there."""
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
    for resource in resources.values():
        if resource["ResourceType"] == "AWS::SQS::Queue":
            with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                sqs.delete_queue(QueueUrl=resource["PhysicalResourceId"])


@pytest.mark.filterwarnings(MOTO_SKIPS)
def test_the_stack_creates_in_moto_with_the_queues_and_redrive_policies_it_declares(
    stack: dict[str, Any], sqs: Any
) -> None:
    assert stack["stack"]["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["stack"]["Outputs"]}
    for queue, dlq in (("Success", "SuccessDeadLetter"), ("Failure", "FailureDeadLetter")):
        attributes = sqs.get_queue_attributes(
            QueueUrl=outputs[f"{queue}QueueUrl"], AttributeNames=["All"]
        )["Attributes"]
        dlq_attributes = sqs.get_queue_attributes(
            QueueUrl=outputs[f"{dlq}QueueUrl"], AttributeNames=["All"]
        )["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq_attributes["QueueArn"]
        assert int(redrive["maxReceiveCount"]) == 7  # the parameter given
        assert attributes["QueueArn"] == outputs[f"{queue}QueueArn"]
        assert attributes["VisibilityTimeout"] == "60"
        # the DLQ keeps messages longer than its source queue
        assert int(dlq_attributes["MessageRetentionPeriod"]) > int(
            attributes["MessageRetentionPeriod"]
        )


@pytest.mark.filterwarnings(MOTO_SKIPS)
def test_deleting_the_stack_leaves_the_queues_and_the_failures_in_them(
    stack: dict[str, Any], sqs: Any, endpoint_url: str
) -> None:
    # given: a failure dead-lettered in the stack's failure DLQ
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["stack"]["Outputs"]}
    dlq = outputs["FailureDeadLetterQueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody='{"requestContext": {"requestId": "r-1"}}')
    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=endpoint_url)

    # when: the stack is deleted
    cloudformation.delete_stack(StackName=stack["stack"]["StackName"])

    # then: the stack is gone, its four queues are not (before: deleted, and the failure with
    # them): the failure is in its DLQ
    urls = [
        r["PhysicalResourceId"]
        for r in stack["resources"].values()
        if r["ResourceType"] == "AWS::SQS::Queue"
    ]
    assert len(urls) == 4
    for url in urls:
        assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    (message,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert "r-1" in message["Body"]
    (deleted,) = cloudformation.describe_stacks(StackName=stack["stack"]["StackId"])["Stacks"]
    assert deleted["StackStatus"] == "DELETE_COMPLETE"  # (the fixture deletes the queues)


def test_every_queue_is_kept_when_the_stack_is_deleted_or_the_queue_replaced() -> None:
    # the DLQs hold the failures not yet replayed, the destination queues the records not yet
    # handled: an update that replaces one must keep the old one too (UpdateReplacePolicy)
    template = load_template()
    queues = _of_type(template, "AWS::SQS::Queue")
    dlqs = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q["Properties"]
    }
    assert dlqs == {"SuccessDeadLetterQueue", "FailureDeadLetterQueue"}
    for name, queue in queues.items():
        assert (queue.get("DeletionPolicy"), queue.get("UpdateReplacePolicy")) == (
            "Retain",
            "Retain",
        ), name


@pytest.mark.filterwarnings(MOTO_SKIPS)
def test_the_stack_creates_the_ecs_service_and_task_definition_in_moto(
    stack: dict[str, Any], endpoint_url: str
) -> None:
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=endpoint_url)
    resources = stack["resources"]
    task_definition = ecs.describe_task_definition(
        taskDefinition=resources["TaskDefinition"]["PhysicalResourceId"]
    )["taskDefinition"]
    (container,) = task_definition["containerDefinitions"]
    assert container["image"] == stack["parameters"]["ImageUri"]
    assert container["stopTimeout"] >= 25 + 5
    # the template's health check, which test_ecs_health_check runs
    assert (
        container["healthCheck"]["command"] == _container(load_template())["HealthCheck"]["Command"]
    )
    assert _secrets(container) == {
        "LAMBDA_DESTINATIONS_STORE": stack["parameters"]["StoreSecretArn"]
    }
    assert container["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert "TaskRole" in resources
    assert "Service" in resources


def _secrets(container: dict[str, Any]) -> dict[str, str]:
    # moto keeps a list item that is AWS::NoValue as null; CloudFormation drops it
    return {s["name"]: s["valueFrom"] for s in container["secrets"] if s is not None}


@pytest.mark.filterwarnings(MOTO_SKIPS)
def test_the_handlers_secret_is_given_whole_when_named(
    endpoint_url: str, network: dict[str, str]
) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint_url)
    handler_secret = secrets.create_secret(
        Name=f"ld-handlers-{uuid.uuid4().hex[:6]}",
        SecretString=json.dumps({"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/x"}),
    )["ARN"]
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=endpoint_url)

    with _created_stack(endpoint_url, network, HandlerSecretArn=handler_secret) as stack:
        task_definition = ecs.describe_task_definition(
            taskDefinition=stack["resources"]["TaskDefinition"]["PhysicalResourceId"]
        )["taskDefinition"]

    (container,) = task_definition["containerDefinitions"]
    assert _secrets(container) == {
        "LAMBDA_DESTINATIONS_STORE": network["secret"],
        "LAMBDA_DESTINATIONS_SECRETS": handler_secret,
    }


@pytest.mark.filterwarnings(MOTO_SKIPS)
def test_the_least_queue_settings_the_template_takes_are_no_error_to_doctor(
    endpoint_url: str, network: dict[str, str], tmp_path: Path
) -> None:
    # Before: MaxReceiveCount took 1, which doctor calls an error (a failing record is
    # quarantined on its first receive: no retry at all).
    parameters = load_template()["Parameters"]
    least = {
        name: str(parameters[name]["MinValue"]) for name in ("MaxReceiveCount", "VisibilityTimeout")
    }
    with _created_stack(endpoint_url, network, **least) as stack:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["stack"]["Outputs"]}
        queues = [outputs["SuccessQueueUrl"], outputs["FailureQueueUrl"]]
        settings = load_settings(
            queues=queues,
            endpoint_url=endpoint_url,
            region=REGION,
            store=f"sqlite:///{tmp_path / 'store.db'}",
        )
        checks = asyncio.run(Doctor(settings).run())
    names = [url.rsplit("/", 1)[-1] for url in queues]
    rows = {c.check: c for c in checks if c.check.split(":")[0] in names}
    for name in names:  # the rows these settings make were there
        assert {f"{name}: visibility timeout", f"{name}: retry backoff"} <= set(rows)
    assert {k: c.detail for k, c in rows.items() if c.status == "error"} == {}


# -- what moto ignores, from the parsed template -------------------------------------------------


@pytest.fixture
def expanded() -> dict[str, Any]:
    return expand_foreach(load_template(), {"FunctionNames": FUNCTIONS})


def test_each_named_function_gets_destinations_pointing_at_the_templates_queues(
    expanded: dict[str, Any],
) -> None:
    configs = _of_type(expanded, "AWS::Lambda::EventInvokeConfig")
    assert sorted(c["Properties"]["FunctionName"] for c in configs.values()) == sorted(FUNCTIONS)
    queues = _of_type(expanded, "AWS::SQS::Queue")
    for config in configs.values():
        destinations = config["Properties"]["DestinationConfig"]
        success = destinations["OnSuccess"]["Destination"]["Fn::GetAtt"]
        failure = destinations["OnFailure"]["Destination"]["Fn::GetAtt"]
        assert success == ["SuccessQueue", "Arn"]
        assert failure == ["FailureQueue", "Arn"]
        # and those queues are the ones the worker polls
        assert success[0] in queues
        assert failure[0] in queues
    environment = _environment(_container(expanded))
    polled = environment["LAMBDA_DESTINATIONS_QUEUES"]["Fn::Join"]
    assert polled == [",", [{"Ref": "SuccessQueue"}, {"Ref": "FailureQueue"}]]


def test_the_queue_policy_lets_the_function_roles_send_over_tls_only() -> None:
    (policy,) = _of_type(load_template(), "AWS::SQS::QueuePolicy").values()
    properties = policy["Properties"]
    assert properties["Queues"] == [{"Ref": "SuccessQueue"}, {"Ref": "FailureQueue"}]
    allow, _, deny = properties["PolicyDocument"]["Statement"]
    granted = allow["Fn::If"][1]
    assert allow["Fn::If"][0] == "HasFunctionRoles"
    assert granted["Principal"] == {"AWS": {"Ref": "FunctionRoleArns"}}
    assert granted["Action"] == "sqs:SendMessage"
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


ACCOUNT = "123456789012"
RECORD_BUCKETS = ["orders-failures", "billing.records"]


def _queue_policy(record_buckets: list[str]) -> list[dict[str, Any]]:
    """The queue policy's statements, resolved for these RecordBuckets."""
    (policy,) = _of_type(load_template(), "AWS::SQS::QueuePolicy").values()
    conditions = {"HasFunctionRoles": False, "HasRecordBuckets": bool(record_buckets)}
    values = {
        "RecordBuckets": record_buckets,
        "AWS::AccountId": ACCOUNT,
        "FailureQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:failure",
        "SuccessQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:success",
    }
    document = resolve_conditions(policy["Properties"]["PolicyDocument"], conditions)
    statements: list[dict[str, Any]] = resolve_references(document, values)["Statement"]
    return statements


def test_the_failure_queue_policy_lets_s3_send_from_the_record_buckets_only() -> None:
    # given: RecordBuckets set
    statements = _queue_policy(RECORD_BUCKETS)

    # then: S3 may send to the failure queue (not the success queue), from those buckets of the
    # stack's account only
    (s3,) = [s for s in statements if s.get("Principal") == {"Service": "s3.amazonaws.com"}]
    assert s3["Effect"] == "Allow"
    assert s3["Action"] == "sqs:SendMessage"
    assert s3["Resource"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:failure"
    assert s3["Condition"] == {
        "ArnLike": {"aws:SourceArn": [f"arn:*:s3:::{b}" for b in RECORD_BUCKETS]},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }


def test_without_record_buckets_the_queue_policy_lets_no_service_send() -> None:
    statements = _queue_policy([])
    assert [s for s in statements if "Service" in s.get("Principal", {})] == []


@pytest.mark.filterwarnings(MOTO_SKIPS)
def test_the_stack_with_record_buckets_creates_and_its_output_sends_records_to_the_failure_queue(
    endpoint_url: str, network: dict[str, str], sqs: Any
) -> None:
    # given: the stack with two record buckets, created in moto
    with _created_stack(endpoint_url, network, RecordBuckets=",".join(RECORD_BUCKETS)) as created:
        assert created["stack"]["StackStatus"] == "CREATE_COMPLETE"
        outputs = {o["OutputKey"]: o["OutputValue"] for o in created["stack"]["Outputs"]}
        # when: a bucket is given the output as its notification configuration, and Lambda
        # writes a record there
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint_url)
        bucket = f"ld-records-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration=json.loads(outputs["RecordBucketNotification"]),
        )
        key = "aws/lambda/async/orders-api/2026/12/06/2026-12-06T03.30.00-0a1b2c3d"
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}")

        # then: the failure queue has the notification of it (after S3's s3:TestEvent, which
        # S3 sends when the configuration is put)
        received = sqs.receive_message(
            QueueUrl=outputs["FailureQueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        bodies = [json.loads(m["Body"]) for m in received["Messages"]]
        assert [b.get("Event") for b in bodies if "Records" not in b] == ["s3:TestEvent"]
        (event,) = [r for b in bodies for r in b.get("Records", [])]
        assert event["eventName"].startswith("ObjectCreated:")
        # S3 URL-encodes the key in its events (as AWS does: spaces as +)
        assert unquote_plus(event["s3"]["object"]["key"]) == key


def test_without_record_buckets_the_stack_has_no_record_policy_or_output(
    expanded: dict[str, Any],
) -> None:
    # the default, an empty list, is one empty item to Fn::ForEach: its policy is conditional
    (policy,) = [k for k in expanded["Resources"] if k.startswith("ReadRecords")]
    assert expanded["Resources"][policy]["Condition"] == "HasRecordBuckets"
    assert expanded["Outputs"]["RecordBucketNotification"]["Condition"] == "HasRecordBuckets"
    condition = expanded["Conditions"]["HasRecordBuckets"]
    assert condition == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "RecordBuckets"}]}, ""]}]
    }


def test_each_destination_queue_has_a_dlq_redrive_and_encryption() -> None:
    queues = _of_type(load_template(), "AWS::SQS::Queue")
    for name in ("SuccessQueue", "FailureQueue"):
        properties = queues[name]["Properties"]
        target = properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"]
        assert target[0] in queues
        assert target[0] != name
        assert "RedrivePolicy" not in queues[target[0]]["Properties"]
    for properties in (q["Properties"] for q in queues.values()):
        assert properties["SqsManagedSseEnabled"] is True
        assert "FifoQueue" not in properties  # Lambda destinations are standard queues


def test_scaling_tracks_backlog_per_task_by_metric_math(expanded: dict[str, Any]) -> None:
    (target,) = _of_type(expanded, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert target["Properties"]["ResourceId"] == {"Fn::Sub": "service/${Cluster}/${Service.Name}"}
    assert target["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
    (policy,) = _of_type(expanded, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    properties = policy["Properties"]
    assert properties["PolicyType"] == "TargetTrackingScaling"
    assert properties["ScalingTargetId"] == {
        "Ref": next(iter(_of_type(expanded, "AWS::ApplicationAutoScaling::ScalableTarget")))
    }
    metrics = properties["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    by_id = {m["Id"]: m for m in metrics}
    (returned,) = [m for m in metrics if m["ReturnData"]]
    # the visible messages of both queues, divided by the service's running tasks
    visible = {
        m["Id"]: m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for m in metrics
        if m.get("MetricStat", {}).get("Metric", {}).get("MetricName")
        == "ApproximateNumberOfMessagesVisible"
    }
    assert sorted(visible.values()) == ["FailureQueue", "SuccessQueue"]
    (tasks_id,) = [
        i
        for i, m in by_id.items()
        if m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "RunningTaskCount"
    ]
    dimensions = by_id[tasks_id]["MetricStat"]["Metric"]["Dimensions"]
    assert {d["Name"]: d["Value"] for d in dimensions} == {
        "ClusterName": {"Ref": "Cluster"},
        "ServiceName": {"Fn::GetAtt": ["Service", "Name"]},
    }
    numerator, denominator = returned["Expression"].split("/")
    assert sorted(numerator.strip(" ()").replace(" ", "").split("+")) == sorted(visible)
    assert denominator.strip() == tasks_id
    # running tasks come from Container Insights, which the cluster turns on
    cluster = expanded["Resources"]["Cluster"]["Properties"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    # a divisor of zero tasks would make no data: the minimum stays at one or more
    assert expanded["Parameters"]["MinCount"]["MinValue"] >= 1


def test_stop_timeout_health_check_and_ops_port_agree_with_the_settings() -> None:
    template = load_template()
    container = _container(template)
    environment = _environment(container)
    grace = float(environment["LAMBDA_DESTINATIONS_SHUTDOWN_GRACE"])
    assert grace == Settings.model_fields["shutdown_grace"].default
    assert container["StopTimeout"] >= grace + 5
    assert container["StopTimeout"] <= 120  # Fargate's ceiling
    port = int(environment["LAMBDA_DESTINATIONS_OPS_PORT"])
    assert [p["ContainerPort"] for p in container["PortMappings"]] == [port]
    # the health check reads the port from that environment: test_ecs_health_check runs it
    assert container["ReadonlyRootFilesystem"] is True


def test_the_container_drops_every_capability_as_the_kubernetes_pod_does() -> None:
    # README, "Running in a container": the worker needs no capability; Fargate takes no
    # no-new-privileges, so dropping them all is what keeps a setuid program from gaining one
    container = _container(load_template())
    (deployment,) = [m for k, m in load_manifests().items() if k.startswith("Deployment/")]
    (worker,) = deployment["spec"]["template"]["spec"]["containers"]
    dropped = worker["securityContext"]["capabilities"]["drop"]
    assert dropped == ["ALL"]
    assert container["LinuxParameters"] == {"Capabilities": {"Drop": dropped}}


def test_the_environment_the_template_sets_is_settings_the_worker_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template = load_template()
    environment = _environment(_container(template))
    parameters = template["Parameters"]
    for name, value in environment.items():
        assert name.startswith(ENV_PREFIX), name
        field = name.removeprefix(ENV_PREFIX).lower()
        assert field in Settings.model_fields, f"{name} is not a setting"
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in parameters:
            value = parameters[value["Ref"]]["Default"]  # the parameter's default
        elif value == {"Ref": "AWS::Region"}:
            value = "eu-west-1"  # the stack's region, as CloudFormation resolves it
        elif not isinstance(value, str):
            value = "https://sqs.us-east-1.amazonaws.com/123456789012/q"  # a queue URL
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(f"{ENV_PREFIX}STORE", "postgresql://ld@db/ld")  # the secret's value
    settings = load_settings()
    assert settings.resolved_region() == "eu-west-1"
    assert settings.log_format == "json"
    assert settings.shutdown_grace == 25


# -- alarms: no Prometheus on ECS --------------------------------------------------------------

ALARM = "AWS::CloudWatch::Alarm"
README_ALARMS = '"Alarms on ECS"'


def _dlqs_and_sources(template: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The template's DLQs (a redrive policy's target) and destination queues (with one)."""
    queues = _of_type(template, "AWS::SQS::Queue")
    sources = {name for name, q in queues.items() if "RedrivePolicy" in q["Properties"]}
    return set(queues) - sources, sources


def _alarms_on(template: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    return [
        a for a in _of_type(template, ALARM).values() if a["Properties"]["MetricName"] == metric
    ]


def _alarmed_queue(alarm: dict[str, Any]) -> str:
    (dimension,) = alarm["Properties"]["Dimensions"]
    assert dimension["Name"] == "QueueName"
    queue, attribute = dimension["Value"]["Fn::GetAtt"]
    assert attribute == "QueueName"
    return str(queue)


def test_each_dlq_has_an_alarm_on_its_visible_messages() -> None:
    template = load_template()
    dlqs, _sources = _dlqs_and_sources(template)
    alarms = _alarms_on(template, "ApproximateNumberOfMessagesVisible")
    assert sorted(_alarmed_queue(a) for a in alarms) == sorted(dlqs)
    for alarm in alarms:
        properties = alarm["Properties"]
        assert properties["Namespace"] == "AWS/SQS"
        assert properties["Statistic"] == "Maximum"
        assert (properties["ComparisonOperator"], properties["Threshold"]) == (
            "GreaterThanThreshold",
            0,
        )
        # an idle empty DLQ stops being published: keep the state rather than go OK or
        # INSUFFICIENT_DATA, so only a published 0 ends an ALARM
        assert properties["TreatMissingData"] == "ignore"


def test_each_destination_queue_has_an_alarm_on_its_oldest_message() -> None:
    template = load_template()
    _dlqs, sources = _dlqs_and_sources(template)
    alarms = _alarms_on(template, "ApproximateAgeOfOldestMessage")
    assert sorted(_alarmed_queue(a) for a in alarms) == sorted(sources)
    for alarm in alarms:
        properties = alarm["Properties"]
        assert properties["Namespace"] == "AWS/SQS"
        assert properties["Threshold"] == {"Ref": "OldestMessageAgeThreshold"}
        assert properties["ComparisonOperator"] == "GreaterThanThreshold"
        assert properties["Period"] == 60  # SQS publishes every minute
        assert properties["TreatMissingData"] == "notBreaching"  # no message, no age


def test_the_age_thresholds_default_is_past_a_healthy_workers_retries() -> None:
    # A retried message ages too, until SQS leaves it out of ApproximateAgeOfOldestMessage at
    # its third receive: its first two backoffs (5 + 10 s by default) plus two handler runs up
    # to handler_timeout must stay under the threshold, or a healthy worker trips it.
    settings = Settings.model_construct()
    first_two = sum(retry_delays(settings, 2))
    assert first_two == 15
    default = load_template()["Parameters"]["OldestMessageAgeThreshold"]["Default"]
    assert default > first_two + 2 * settings.handler_timeout
    assert default < 345600  # under the queues' retention: a message ages out at 4 days


def test_an_alarm_fires_when_the_service_runs_no_task(expanded: dict[str, Any]) -> None:
    (alarm,) = _alarms_on(expanded, "RunningTaskCount")
    properties = alarm["Properties"]
    # the same metric the scaling policy divides by, which Container Insights publishes
    (policy,) = _of_type(expanded, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    metrics = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]["Metrics"]
    (tasks,) = [m for m in metrics if m["Id"] == "tasks"]
    scaled = tasks["MetricStat"]["Metric"]
    assert properties["Namespace"] == scaled["Namespace"] == "ECS/ContainerInsights"
    assert properties["Dimensions"] == scaled["Dimensions"]
    cluster = expanded["Resources"]["Cluster"]["Properties"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("LessThanThreshold", 1)
    assert properties["TreatMissingData"] == "breaching"  # no data: no one knows a task runs


def test_every_alarm_says_what_to_do_and_notifies_the_optional_topic() -> None:
    template = load_template()
    alarms = _of_type(template, ALARM)
    assert len(alarms) == 5
    assert template["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    section = "### Alarms on ECS"
    assert section in README.read_text()
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == properties["OKActions"] == notify, name
        assert properties["TreatMissingData"] in {"ignore", "notBreaching", "breaching"}, name
        description = properties["AlarmDescription"]["Fn::Sub"]
        assert README_ALARMS in description, name
        assert "lambda-destinations" in description or "aws ecs" in description, name


def _stack_values(stack: dict[str, Any], sqs: Any) -> dict[str, Any]:
    """What the stack's Refs and GetAtts resolve to, read from what moto created."""
    template = load_template()
    values: dict[str, Any] = {
        name: spec.get("Default") for name, spec in template["Parameters"].items()
    }
    values.update(stack["parameters"])
    for name, spec in template["Parameters"].items():
        if spec["Type"] == "Number":  # given as a string; CloudFormation passes a number
            values[name] = json.loads(str(values[name]))
    values["AWS::StackName"] = stack["stack"]["StackName"]
    for name, resource in stack["resources"].items():
        physical = resource["PhysicalResourceId"]
        values[name] = physical
        if resource["ResourceType"] == "AWS::SQS::Queue":
            values[f"{name}.QueueName"] = physical.rsplit("/", 1)[-1]
        elif resource["ResourceType"] == "AWS::ECS::Service":
            values[f"{name}.Name"] = physical.rsplit("/", 1)[-1]
    return values


@pytest.mark.filterwarnings(MOTO_SKIPS)
@pytest.mark.parametrize("with_topic", [True, False], ids=["topic", "no-topic"])
def test_the_alarms_resolved_against_the_created_stack_are_alarms_cloudwatch_accepts(
    endpoint_url: str, network: dict[str, str], sqs: Any, with_topic: bool
) -> None:
    # given: the stack created in moto (which skips alarms), with or without a topic
    sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint_url)
    topic = sns.create_topic(Name=f"ld-alarms-{uuid.uuid4().hex[:6]}")["TopicArn"]
    extra = {"AlarmTopicArn": topic, "OldestMessageAgeThreshold": "1200"} if with_topic else {}
    cloudwatch = boto3.client("cloudwatch", region_name=REGION, endpoint_url=endpoint_url)
    with _created_stack(endpoint_url, network, **extra) as stack:
        values = _stack_values(stack, sqs)
        conditions = {"HasAlarmTopic": with_topic}
        alarms = {
            name: resolve_references(resolve_conditions(a["Properties"], conditions), values)
            for name, a in _of_type(load_template(), ALARM).items()
        }
        # when: each alarm's properties, as CloudFormation would resolve them, are put
        for properties in alarms.values():
            cloudwatch.put_metric_alarm(**properties)
        described = {
            a["AlarmName"]: a
            for a in cloudwatch.describe_alarms(AlarmNamePrefix=stack["stack"]["StackName"])[
                "MetricAlarms"
            ]
        }
        try:
            # then: each names a queue the stack created, or its service and cluster
            assert len(described) == len(alarms) == 5
            ecs = boto3.client("ecs", region_name=REGION, endpoint_url=endpoint_url)
            for alarm in described.values():
                dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
                if alarm["Namespace"] == "AWS/SQS":
                    assert sqs.get_queue_url(QueueName=dimensions["QueueName"])["QueueUrl"]
                    assert dimensions["QueueName"] in alarm["AlarmDescription"]
                else:
                    (service,) = ecs.describe_services(
                        cluster=dimensions["ClusterName"], services=[dimensions["ServiceName"]]
                    )["services"]
                    assert service["status"] == "ACTIVE"
                actions = [topic] if with_topic else []
                assert alarm["AlarmActions"] == alarm["OKActions"] == actions
                if alarm["MetricName"] == "ApproximateAgeOfOldestMessage":
                    assert alarm["Threshold"] == (1200 if with_topic else 900)
                    assert f"over {1200 if with_topic else 900} s" in alarm["AlarmDescription"]
                assert len(alarm["AlarmDescription"]) <= 1024  # CloudWatch's limit
        finally:
            cloudwatch.delete_alarms(AlarmNames=list(described))
