"""deploy/kubernetes: kubernetes-validate --strict on every manifest (its schemas ship with it,
so this runs offline), the KEDA objects against cloudcoil's KEDA models with unknown keys
refused, and the cross-references between the manifests and the worker's settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from deploy_helpers import KUBERNETES, load_manifests

from lambda_destinations.config import ENV_PREFIX, Settings

KEDA_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "ScaledObject": ScaledObject,
    "TriggerAuthentication": TriggerAuthentication,
}


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run(
        [str(tool), "--strict", *map(str, paths)], capture_output=True, text=True, check=False
    )


def _kustomization_files() -> list[Path]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return [KUBERNETES / name for name in kustomization["resources"]]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return load_manifests()


def _one(manifests: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [m for key, m in manifests.items() if key.startswith(f"{kind}/")]
    return found


def _worker(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = _one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


# -- schemas ---------------------------------------------------------------------------------


def test_every_manifest_passes_kubernetes_validate_strict() -> None:
    files = _kustomization_files()
    assert {f.name for f in KUBERNETES.glob("*.yaml")} == {f.name for f in files} | {
        "kustomization.yaml"
    }, "a manifest in deploy/kubernetes is not in the kustomization"
    result = _validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    # every built-in kind was checked against a schema (KEDA's kinds are checked below)
    for kind in ("deployment", "serviceaccount", "service", "poddisruptionbudget", "configmap"):
        assert f"passed for resource {kind}/" in result.stdout + result.stderr


def test_kubernetes_validate_refuses_an_unknown_key(tmp_path: Path) -> None:
    # given the Deployment with a misspelt field
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 40
    broken = tmp_path / "deployment.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    # then strict validation fails: the check above can fail
    assert _validate(broken).returncode != 0


def _unknown_keys(given: Any, kept: Any, where: str = "") -> list[str]:
    """Keys of ``given`` that the model dropped (pydantic ignores unknown keys by default)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        found = []
        for key, value in given.items():
            if key not in kept:
                found.append(f"{where}.{key}")
            else:
                found += _unknown_keys(value, kept[key], f"{where}.{key}")
        return found
    if isinstance(given, list) and isinstance(kept, list):
        return [
            k
            for i, (a, b) in enumerate(zip(given, kept, strict=True))
            for k in _unknown_keys(a, b, f"{where}[{i}]")
        ]
    return []


def keda_problems(document: dict[str, Any]) -> list[str]:
    """Validate with cloudcoil's KEDA model; unknown keys count as errors."""
    model = KEDA_MODELS[document["kind"]]
    try:
        parsed = model.model_validate(document)
    except pydantic.ValidationError as exc:
        return [str(exc)]
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"unknown key {key}" for key in _unknown_keys(document, kept)]


def test_the_keda_objects_validate_against_the_keda_models(
    manifests: dict[str, dict[str, Any]],
) -> None:
    keda = [m for m in manifests.values() if m["apiVersion"].startswith("keda.sh/")]
    assert sorted(m["kind"] for m in keda) == ["ScaledObject", "TriggerAuthentication"]
    for document in keda:
        assert keda_problems(document) == [], document["kind"]


def test_the_keda_check_refuses_unknown_keys(manifests: dict[str, dict[str, Any]]) -> None:
    scaled = _one(manifests, "ScaledObject")
    misspelt = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 10}}
    assert keda_problems(misspelt) == ["unknown key .spec.maxReplicas"]
    wrong_type = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "one"}}
    assert keda_problems(wrong_type)


# -- cross-references ------------------------------------------------------------------------


def test_scale_target_is_the_deployment(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = _one(manifests, "Deployment")
    target = _one(manifests, "ScaledObject")["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    # the count is KEDA's: a replicas field would be set back by every kubectl apply
    assert "replicas" not in deployment["spec"]


def test_triggers_read_both_polled_queues_with_the_trigger_authentication(
    manifests: dict[str, dict[str, Any]],
) -> None:
    spec = _one(manifests, "ScaledObject")["spec"]
    auth = _one(manifests, "TriggerAuthentication")
    environment = {e["name"]: e for e in _worker(manifests)["env"]}
    polled = environment[f"{ENV_PREFIX}QUEUES"]["value"]
    queues_read = []
    for trigger in spec["triggers"]:
        assert trigger["type"] == "aws-sqs-queue"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        metadata = trigger["metadata"]
        assert int(metadata["queueLength"]) >= 1
        assert int(metadata["activationQueueLength"]) >= 0
        queues_read.append(metadata["queueURLFromEnv"])
        assert metadata["queueURLFromEnv"] in environment  # KEDA reads it from the target
    assert polled == ",".join(f"$({name})" for name in queues_read)
    # the region KEDA asks is the worker's
    config = _one(manifests, "ConfigMap")["data"]
    assert {t["metadata"]["awsRegion"] for t in spec["triggers"]} == {config["region"]}
    # KEDA uses the pods' own IRSA role
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}


def test_probes_use_the_ops_port_and_paths(manifests: dict[str, dict[str, Any]]) -> None:
    worker = _worker(manifests)
    (port,) = worker["ports"]
    environment = {e["name"]: e.get("value") for e in worker["env"]}
    assert port["containerPort"] == int(environment[f"{ENV_PREFIX}OPS_PORT"])
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert worker["startupProbe"]["httpGet"]["port"] == port["name"]
    service = _one(manifests, "Service")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert service["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_the_grace_period_exceeds_shutdown_grace(manifests: dict[str, dict[str, Any]]) -> None:
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    environment = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    grace = float(environment[f"{ENV_PREFIX}SHUTDOWN_GRACE"])
    assert grace == Settings.model_fields["shutdown_grace"].default
    assert pod["terminationGracePeriodSeconds"] > grace + 5


def test_selectors_match_the_pods(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = _one(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        _one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        _one(manifests, "Service")["spec"]["selector"],
    ):
        assert selector.items() <= labels.items()


def test_the_pod_is_locked_down_and_sized(manifests: dict[str, dict[str, Any]]) -> None:
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    worker = _worker(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == _one(manifests, "ServiceAccount")["metadata"]["name"]
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    assert {m["mountPath"] for m in worker["volumeMounts"]} == {"/tmp"}  # noqa: S108
    assert set(worker["resources"]) == {"requests", "limits"}
    role = _one(manifests, "ServiceAccount")["metadata"]["annotations"]
    assert role["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_the_store_url_comes_from_a_secret(manifests: dict[str, dict[str, Any]]) -> None:
    environment = {e["name"]: e for e in _worker(manifests)["env"]}
    store = environment[f"{ENV_PREFIX}STORE"]
    assert "value" not in store
    assert set(store["valueFrom"]) == {"secretKeyRef"}


def test_the_handlers_secrets_come_from_an_optional_secret(
    manifests: dict[str, dict[str, Any]],
) -> None:
    # a key for each variable the handlers' *_env options name; a cluster without the Secret
    # still starts the pod
    (source,) = _worker(manifests)["envFrom"]
    assert source == {"secretRef": {"name": "lambda-destinations-handlers", "optional": True}}
    kustomization = (KUBERNETES / "kustomization.yaml").read_text()
    assert "create secret generic lambda-destinations-handlers" in kustomization


def test_every_worker_variable_is_a_setting(manifests: dict[str, dict[str, Any]]) -> None:
    names = [e["name"] for e in _worker(manifests)["env"] if e["name"].startswith(ENV_PREFIX)]
    assert names
    for name in names:
        assert name.removeprefix(ENV_PREFIX).lower() in Settings.model_fields, name


# KEDA's operator runs under its own service account (keda-operator in the namespace keda, as
# its Helm chart and manifests install it); with identityOwner: workload it asks STS for the
# workload's role with its own token (AssumeRoleWithWebIdentity, then AssumeRole).
KEDA_OPERATOR = "system:serviceaccount:keda:keda-operator"


def test_the_role_trusts_the_worker_and_keda_by_web_identity(
    manifests: dict[str, dict[str, Any]],
) -> None:
    # given the IRSA role's trust policy, and the service account the pods run as
    trust = json.loads((KUBERNETES / "iam-trust-policy.json").read_text())
    account = _one(manifests, "ServiceAccount")
    namespace = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["namespace"]
    worker = f"system:serviceaccount:{namespace}:{account['metadata']['name']}"
    # then one statement lets both take the role through the cluster's OIDC provider
    (statement,) = trust["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    provider = statement["Principal"]["Federated"].split(":oidc-provider/", 1)[1]
    conditions = statement["Condition"]["StringEquals"]
    assert conditions[f"{provider}:aud"] == "sts.amazonaws.com"
    assert sorted(conditions[f"{provider}:sub"]) == sorted([worker, KEDA_OPERATOR])
    # in the account of the role the service account names
    role_account = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].split(":")[4]
    assert statement["Principal"]["Federated"].split(":")[4] == role_account
