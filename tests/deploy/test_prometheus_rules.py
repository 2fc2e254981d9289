"""deploy/prometheus/alerts.yaml: promtool checks it and runs its unit tests
(prometheus_alerts_test.yaml: input series and the alerts expected of them); every alert says
how bad it is and what to run, and the commands it names are the CLI's. A real Prometheus
evaluates the file against a real worker in tests/worker/test_prometheus.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from deploy_helpers import DEPLOY, KUBERNETES, README, load_manifests

from lambda_destinations.cli import COMMANDS, cli
from processes import prometheus_tool

RULES = DEPLOY / "prometheus" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("prometheus_alerts_test.yaml")
SEVERITIES = ("warning", "critical")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_promtool_checks_the_rules_file() -> None:
    result = _promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_refuses_a_rule_that_does_not_parse(tmp_path: Path) -> None:
    # given the file with one expression broken: the check above can fail
    broken = tmp_path / "alerts.yaml"
    broken.write_text(RULES.read_text(encoding="utf-8").replace("== 1", "== == 1", 1))
    assert _promtool("check", "rules", broken).returncode != 0


def test_the_rules_unit_tests_pass() -> None:
    result = _promtool("test", "rules", UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_for_a_rule_that_sums_a_dlq_every_replica_samples(
    tmp_path: Path,
) -> None:
    # given the DLQ rule adding up the replicas' samples of one queue (the mistake `max` avoids)
    rules = tmp_path / "deploy" / "prometheus" / "alerts.yaml"
    rules.parent.mkdir(parents=True)
    rules.write_text(RULES.read_text(encoding="utf-8").replace("max by (queue)", "sum by (queue)"))
    tests = tmp_path / "tests" / "deploy" / UNIT_TESTS.name
    tests.parent.mkdir(parents=True)
    tests.write_text(UNIT_TESTS.read_text(encoding="utf-8"))
    # then the unit tests catch it: promtool compares every expected alert, value included
    result = _promtool("test", "rules", tests)
    assert result.returncode != 0
    assert "LambdaDestinationsDlqNotEmpty" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [str(Path("..", "..", RULES.relative_to(DEPLOY.parent)))]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    for rule in _rules():
        name = rule["alert"]
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == name]
        assert [] in expected, f"{name}: no unit test where it stays quiet"
        assert any(expected), f"{name}: no unit test where it fires"


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    for rule in _rules():
        name = rule["alert"]
        assert name.startswith("LambdaDestinations"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        description = rule["annotations"]["description"]
        assert "`" in description, f"{name}: its description names no command to run"


def _commands(description: str) -> list[list[str]]:
    """The CLI commands a description names in backquotes (its templates given a value)."""
    description = re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"<\1>", description)
    found = []
    for quoted in re.findall(r"`([^`]+)`", " ".join(description.split())):
        words = quoted.removeprefix("lambda-destinations ").split()
        # a log line the worker writes (`store unavailable; receiving paused`) is no command
        if words[0] in COMMANDS and ";" not in quoted:
            found.append(words)
    return found


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_the_commands_an_alert_names_are_the_clis(rule: dict[str, Any]) -> None:
    commands = _commands(rule["annotations"]["description"])
    assert commands, "no lambda-destinations command in the description"
    for words in commands:
        # --help after the words: click refuses an unknown command or option before it helps
        result = CliRunner().invoke(cli, [*words, "--help"])
        assert result.exit_code == 0, (words, result.output)


def test_the_readme_lists_every_shipped_alert() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(LambdaDestinations\w+)` \|", section, re.M)
    assert listed == [rule["alert"] for rule in _rules()]
    assert "deploy/prometheus/alerts.yaml" in section


def test_the_prometheus_rule_of_deploy_kubernetes_is_the_rules_file() -> None:
    # the Prometheus Operator's PrometheusRule: its spec is the rules file's groups, as they are
    folder = KUBERNETES / "monitoring"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["resources"] == ["prometheusrule.yaml", "servicemonitor.yaml"]
    assert {f.name for f in folder.glob("*.yaml")} == {
        "kustomization.yaml",
        *kustomization["resources"],
    }
    rule = yaml.safe_load((folder / "prometheusrule.yaml").read_text(encoding="utf-8"))
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"] == {"name": "lambda-destinations"}
    assert rule["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))


def _labelled(directory: Path) -> tuple[str, dict[str, str]]:
    """A kustomization's namespace and the labels it gives every object."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    pairs = {k: v for entry in kustomization["labels"] for k, v in entry["pairs"].items()}
    return kustomization["namespace"], pairs


def test_the_service_monitor_scrapes_the_workers_service_as_the_job_the_rules_read() -> None:
    # The Prometheus Operator scrapes what a ServiceMonitor names, and ignores the Service's
    # prometheus.io annotations: without one, no rule of the PrometheusRule has a series to
    # read, LambdaDestinationsDown's `up` included, and none can ever fire.
    folder = KUBERNETES / "monitoring"
    monitor = yaml.safe_load((folder / "servicemonitor.yaml").read_text(encoding="utf-8"))
    kind = (monitor["apiVersion"], monitor["kind"])
    assert kind == ("monitoring.coreos.com/v1", "ServiceMonitor")
    (service,) = [m for key, m in load_manifests().items() if key.startswith("Service/")]
    namespace, labels = _labelled(KUBERNETES)
    labels = {**service["metadata"].get("labels", {}), **labels}
    # it selects the worker's Service, in its namespace, by labels the Service has
    assert _labelled(folder)[0] == namespace
    assert "namespaceSelector" not in monitor["spec"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # and scrapes its /metrics on a port the Service has
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint.get("path", "/metrics") == "/metrics"
    # as the job LambdaDestinationsDown reads (the Service's name, unless jobLabel names one
    # of its labels)
    job = labels.get(monitor["spec"].get("jobLabel", ""), service["metadata"]["name"])
    (down,) = [rule for rule in _rules() if rule["alert"] == "LambdaDestinationsDown"]
    assert re.search(r'\bup\{job="([^"]+)"\}', down["expr"]).group(1) == job
