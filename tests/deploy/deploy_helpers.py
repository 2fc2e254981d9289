"""Reading the package's AWS calls and the deploy templates, for the deploy tests."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import yaml
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "lambda_destinations"
DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "cloudformation" / "lambda-destinations.yaml"
KUBERNETES = DEPLOY / "kubernetes"
TERRAFORM = DEPLOY / "terraform"
README = ROOT / "README.md"

# The services the package makes clients for without naming them in a literal (the invoker).
IMPLIED_SERVICES = ("lambda",)
# Receivers that are never AWS clients, though a method of theirs may share an API's name.
NOT_CLIENTS = ("store",)
# What makes a client, and where among its arguments the service's name is: ``client_in``
# takes the account first (``client_in(account, "logs")``).
CLIENT_FACTORIES = {"client": 0, "create_client": 0, "client_in": 1}
# Methods given an operation's API name (``"DeleteMessageBatch"``) that call it on a client
# through ``getattr(client, xform_name(name))``: the scan reads the name where they are called.
# dynamic_dispatchers() finds every such getattr, so a new one cannot hide its calls.
OPERATION_DISPATCHERS = ("_batch_call",)


@dataclass(frozen=True)
class Call:
    service_operations: frozenset[tuple[str, str]]  # what the method name can be, per service
    path: str  # relative to the package
    line: int
    receiver: str


def _trees(package: Path) -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for path in sorted(package.rglob("*.py"))
    ]


def client_services(package: Path = PACKAGE) -> set[str]:
    """Every service the package makes a client for: ``….client("sqs")``,
    ``create_client("lambda", …)``, ``client_in(account, "logs")``, and the Lambda invoker."""
    services = set(IMPLIED_SERVICES)
    for _path, tree in _trees(package):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)):
                continue
            index = CLIENT_FACTORIES.get(getattr(node.func, "attr", getattr(node.func, "id", "")))
            if index is None or len(node.args) <= index:
                continue
            named = node.args[index]
            if isinstance(named, ast.Constant) and isinstance(named.value, str):
                services.add(named.value)
    return services


@cache
def _snake_operations(services: frozenset[str]) -> dict[str, frozenset[tuple[str, str]]]:
    session = botocore.session.get_session()
    found: dict[str, set[tuple[str, str]]] = {}
    for service in services:
        for operation in session.get_service_model(service).operation_names:
            found.setdefault(xform_name(operation), set()).add((service, operation))
    return {name: frozenset(pairs) for name, pairs in found.items()}


def client_calls(package: Path = PACKAGE) -> list[Call]:
    """Every ``x.some_operation(...)`` in the package whose name is an operation of a service
    the package makes clients for."""
    names = _snake_operations(frozenset(client_services(package)))
    calls: list[Call] = []
    for path, tree in _trees(package):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            found = _paged_operation(node) or _dispatched_operation(node) or _direct_operation(node)
            if found is None:
                continue
            operation, receiver = found
            if operation in names and not any(n in receiver for n in NOT_CLIENTS):
                calls.append(
                    Call(names[operation], str(path.relative_to(package)), node.lineno, receiver)
                )
    return calls


def _direct_operation(node: ast.Call) -> tuple[str, str] | None:
    """``client.some_operation(...)``: (the operation's name, the receiver)."""
    if isinstance(node.func, ast.Attribute):
        return node.func.attr, ast.unparse(node.func.value)
    return None


def _dispatched_operation(node: ast.Call) -> tuple[str, str] | None:
    """``self._batch_call("DeleteMessageBatch")``: (the operation's name, the dispatcher)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in OPERATION_DISPATCHERS or not node.args:
        return None
    operation = node.args[0]
    if isinstance(operation, ast.Constant) and isinstance(operation.value, str):
        return xform_name(operation.value), ast.unparse(func)
    return None


def dynamic_dispatchers(package: Path = PACKAGE) -> set[str]:
    """The functions that call a client method chosen at run time, by
    ``getattr(client, xform_name(...))``."""
    found = set()
    for _path, tree in _trees(package):
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "getattr"
                    and len(node.args) >= 2
                    and "xform_name" in ast.unparse(node.args[1])
                ):
                    found.add(function.name)
    return found


def _paged_operation(node: ast.Call) -> tuple[str, str] | None:
    """A listing read page by page: ``all_items(client, "list_x", ...)`` (aws.all_items) or
    ``client.get_paginator("list_x")``: (the operation's name, the client)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name == "all_items" and len(node.args) >= 2:
        client, operation = node.args[0], node.args[1]
    elif name == "get_paginator" and isinstance(func, ast.Attribute) and node.args:
        client, operation = func.value, node.args[0]
    else:
        return None
    if isinstance(operation, ast.Constant) and isinstance(operation.value, str):
        return operation.value, ast.unparse(client)
    return None


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub …) as their long form."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        loaded: dict[str, Any] = yaml.load(stream, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


def load_manifests(directory: Path = KUBERNETES) -> dict[str, dict[str, Any]]:
    """The kustomization's resources, by ``Kind/name``."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    manifests: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((directory / name).read_text()):
            if document:
                manifests[f"{document['kind']}/{document['metadata']['name']}"] = document
    return manifests


def _alphanumeric(value: str) -> str:
    return "".join(ch for ch in value if ch.isalnum())


def _substitute(node: Any, name: str, value: str) -> Any:
    """``{"Ref": name}`` → value, and ``${name}`` inside strings → value, everywhere in node."""
    if isinstance(node, dict):
        if node == {"Ref": name}:
            return value
        return {
            key.replace(f"&{{{name}}}", _alphanumeric(value)).replace(f"${{{name}}}", value): (
                _substitute(item, name, value)
            )
            for key, item in node.items()
        }
    if isinstance(node, list):
        return [_substitute(item, name, value) for item in node]
    if isinstance(node, str):
        return node.replace(f"${{{name}}}", value)
    return node


def expand_foreach(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The template as AWS::LanguageExtensions leaves it: each ``Fn::ForEach`` of Resources
    expanded over its list parameter, the Transform removed. moto has no LanguageExtensions,
    so the moto test and the IAM checks read the template through this (only what our
    template uses: a collection that is a ``Ref`` to a list parameter). A list parameter not
    given is its default, as CloudFormation has it (an empty default is one empty item)."""
    expanded = {k: v for k, v in template.items() if k != "Transform"}
    resources: dict[str, Any] = {}
    for key, body in template["Resources"].items():
        if not key.startswith("Fn::ForEach::"):
            resources[key] = body
            continue
        name, collection, outputs = body
        parameter = collection["Ref"]
        if parameter in parameters:
            values = parameters[parameter]
        else:
            values = str(template["Parameters"][parameter]["Default"]).split(",")
        for value in values:
            for out_key, out_body in outputs.items():
                resources.update(_substitute({out_key: out_body}, name, value))
    expanded["Resources"] = resources
    return expanded


def resolve_conditions(node: Any, conditions: dict[str, bool]) -> Any:
    """``Fn::If`` resolved with the given condition values; ``AWS::NoValue`` dropped."""
    no_value = {"Ref": "AWS::NoValue"}
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            return resolve_conditions(when_true if conditions[name] else when_false, conditions)
        resolved = {k: resolve_conditions(v, conditions) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v != no_value}
    if isinstance(node, list):
        items = [resolve_conditions(item, conditions) for item in node]
        return [item for item in items if item != no_value]
    return node


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes on labels and string literals; drop them, and its
    ``__is_block__`` / ``__comments__`` markers."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k not in MARKERS}
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


MARKERS = ("__is_block__", "__comments__")


def load_terraform(directory: Path = TERRAFORM) -> dict[str, dict[str, Any]]:
    """The module's blocks: ``resource``/``data`` as {type: {name: body}}, ``variable`` and
    ``output`` as {name: body}, ``locals`` merged."""
    import hcl2  # the deploy tests' own dependency

    module: dict[str, dict[str, Any]] = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "locals": {},
    }
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as stream:
            parsed = _unquote(hcl2.load(stream))
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for type_name, named in block.items():
                    module[kind].setdefault(type_name, {}).update(named)
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                module[kind].update(block)
        for block in parsed.get("locals", []):
            module["locals"].update(block)
    return module


def terraform_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """An aws_iam_policy_document's statements, the dynamic ones included (as if enabled)."""
    statements = list(document.get("statement", []))
    for dynamic in document.get("dynamic", []):
        statements += dynamic["statement"]["content"]
    return statements


def readme_operator_table() -> dict[str, str]:
    """The README's table of operator commands: command -> the row's actions cell."""
    section = README.read_text().split("### IAM: each action and why", 1)[1].split("\n## ", 1)[0]
    table = section.split("| command | actions | on |", 1)[1].split("\n\n", 1)[0]
    cells = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
    return {row[0].removeprefix("| ").strip("`"): row[1] for row in cells}


def resolve_references(node: Any, values: dict[str, Any]) -> Any:
    """``Ref``, ``Fn::GetAtt`` and ``Fn::Sub`` replaced by what ``values`` gives: ``"Name"``
    for a Ref (parameters, resources' physical ids, pseudo parameters) and
    ``"Resource.Attribute"`` for a GetAtt; ``Fn::Join`` and ``Fn::Split`` of what they resolve
    to done. A reference it has no value for raises KeyError."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return values[node["Ref"]]
        if set(node) == {"Fn::GetAtt"}:
            return values[".".join(node["Fn::GetAtt"])]
        if set(node) == {"Fn::Sub"}:
            return _sub(node["Fn::Sub"], values)
        if set(node) == {"Fn::Join"}:
            delimiter, items = node["Fn::Join"]
            return delimiter.join(resolve_references(items, values))
        if set(node) == {"Fn::Split"}:
            delimiter, text = node["Fn::Split"]
            return resolve_references(text, values).split(delimiter)
        return {k: resolve_references(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_references(item, values) for item in node]
    return node


def _sub(sub: str | list[Any], values: dict[str, Any]) -> str:
    """``Fn::Sub``, its string form or its list form (the string, and its own variables)."""
    text, own = (sub, {}) if isinstance(sub, str) else sub
    variables = {**values, **{k: resolve_references(v, values) for k, v in own.items()}}
    return re.sub(r"\$\{([^}!]+)\}", lambda m: str(variables[m.group(1)]), text)
