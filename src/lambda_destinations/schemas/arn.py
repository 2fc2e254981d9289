"""Lambda function ARNs, parsed into partition, region, account, name and qualifier."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lambda_destinations.redact import echoed

# arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
# Partition and region are matched loosely (new partitions and regions keep appearing: aws-cn,
# aws-us-gov, aws-iso-b, aws-eusc ...); the name and qualifier follow Lambda's documented rules:
# names are letters, digits, hyphens and underscores (1-64); a qualifier is $LATEST, a version
# number, an alias name or $LATEST.PUBLISHED (the version Lambda Managed Instances publish, and
# invoke for an unqualified ARN).
_FUNCTION_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12})"
    r":function:(?P<name>[A-Za-z0-9_-]{1,64})"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[A-Za-z0-9_-]{1,128}))?"
)

# What Lambda's Invoke takes as its FunctionName (the pattern of its API model, regions matched
# a little more loosely): a name, a partial ARN (123456789012:function:name) or an ARN, each
# maybe with :version or :alias; a name is at most 64 characters, the whole at most 256.
_INVOKE_NAME = re.compile(
    r"(?P<arn>arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}):)?"
    r"(?:[0-9]{12}:)?"
    r"(?:function:)?(?P<name>[A-Za-z0-9_.-]{1,64})"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[A-Za-z0-9_-]{1,128}))?"
)
INVOKE_NAME_MAX = 256
# What Invoke takes as its Qualifier (NumericLatestPublishedOrAliasQualifier in its API model):
# 1 to 128 characters, $LATEST.PUBLISHED or letters, digits, "-", "_" and "$" ($LATEST, a
# version number, an alias name).
_INVOKE_QUALIFIER = re.compile(r"\$LATEST\.PUBLISHED|[A-Za-z0-9_$-]{1,128}")
# What to write instead of a text that is not such a function (a setting's or an option's line).
NOT_INVOKE_NAME = (
    "is not a Lambda function name or ARN: write a name (orders-api), maybe with :alias or "
    ":version, or the function's ARN (arn:aws:lambda:us-east-1:123456789012:function:orders-api)"
)
# The same for Invoke's Qualifier.
NOT_INVOKE_QUALIFIER = (
    "is not a version or alias: write a version number (7), an alias name (live) or $LATEST, "
    "1 to 128 letters, digits, '-' or '_'"
)


# The account of a function named by its ARN or partial ARN (123456789012:function:name).
_FUNCTION_ACCOUNT = re.compile(r"(?:arn:[^:]*:lambda:[^:]*:)?([0-9]{12}):function:")


def function_account(text: str) -> str | None:
    """The account of the function ``text`` names by ARN or partial ARN; None for a name,
    which Lambda looks up in the caller's own account."""
    match = _FUNCTION_ACCOUNT.match(text)
    return match[1] if match else None


def invoke_function_name(text: str) -> str | None:
    """The function's name in ``text``, when it has the form of a function Lambda's Invoke can
    be given (a name, a partial ARN or an ARN, maybe qualified); None when it has not. Whether
    the function exists only Lambda can say."""
    match = _invoke_name(text)
    return None if match is None else match["name"]


def invoke_function_region(text: str) -> str | None:
    """The region of the function ARN ``text`` (``arn:aws:lambda:eu-west-1:...``); None for a
    name or a partial ARN, which Lambda reads in the region it was sent to. Lambda refuses an
    ARN of another region than its own ("Functions from 'eu-west-1' are not reachable in this
    region"): the client must be that region's."""
    match = _invoke_name(text)
    return None if match is None or match["arn"] is None else match["region"]


def _invoke_name(text: str) -> re.Match[str] | None:
    return _INVOKE_NAME.fullmatch(text) if len(text) <= INVOKE_NAME_MAX else None


def check_invoke_target(function: str, qualifier: str | None = None) -> None:
    """Raise ``ValueError``, its message one line, when Lambda's Invoke could never take
    ``function`` with ``qualifier``: a function not in the form of a name or ARN, a qualifier
    not in the form of a version or alias, or one other than the qualifier ``function`` ends
    with (Lambda refuses that Invoke: "The derived qualifier from the function name does not
    match the specified qualifier"). Whether the function and its alias exist only Lambda can
    say. Raise ``TypeError`` when either is not a string (an application's call: the CLI and
    the settings give text)."""
    if not isinstance(function, str):
        raise TypeError(
            "function must be a function name, ARN or partial ARN as a string, "
            f"not {_type_name(function)}"
        )
    if qualifier is not None and not isinstance(qualifier, str):
        raise TypeError(
            "qualifier must be a version or alias as a string (7, live, $LATEST) or None, "
            f"not {_type_name(qualifier)}"
        )
    match = _invoke_name(function)
    if match is None:
        raise ValueError(f"{echoed(function)!r} {NOT_INVOKE_NAME}")
    if qualifier is None:
        return
    check_invoke_qualifier(qualifier)
    named = match["qualifier"]
    if named is not None and named != qualifier:
        raise ValueError(
            f"{echoed(qualifier)!r} is not the version or alias {echoed(function)!r} names "
            f"({named!r}), and Lambda refuses an Invoke given two: give it once, in the "
            "function or as the qualifier"
        )


def check_invoke_qualifier(qualifier: str) -> None:
    """Raise ``ValueError``, its message one line, when ``qualifier`` is in no form Invoke's
    Qualifier takes (a version number, an alias name, ``$LATEST``)."""
    if _INVOKE_QUALIFIER.fullmatch(qualifier) is None:
        raise ValueError(f"{echoed(qualifier)!r} {NOT_INVOKE_QUALIFIER}")


def requalified(function: str, qualifier: str) -> str:
    """``function`` (a name, partial ARN or ARN, maybe qualified, as Invoke takes it) naming
    ``qualifier`` instead of its own: ``orders-api:12`` with ``live`` is ``orders-api:live``.
    ``function`` is returned as it is when it is in no form Invoke takes (Invoke refuses it)."""
    match = _invoke_name(function)
    if match is None:
        return function
    return f"{function[: match.end('name')]}:{qualifier}"


def qualified_name(function: str | None) -> str:
    """``name:qualifier`` of a function ARN (:attr:`FunctionArn.qualified_name`); any other
    text (a name or partial ARN given for a legacy DLQ message) as it is."""
    try:
        return FunctionArn.parse(function or "").qualified_name
    except ValueError:
        return function or ""


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


@dataclass(frozen=True, slots=True)
class FunctionArn:
    """A parsed Lambda function ARN.

    ``qualifier`` is ``"$LATEST"``, ``"$LATEST.PUBLISHED"``, a version number (``"7"``) or an
    alias (``"live"``), or ``None`` for an unqualified ARN. ``arn`` keeps the text exactly as given.
    """

    arn: str
    partition: str
    region: str
    account: str
    function_name: str
    qualifier: str | None

    @classmethod
    def parse(cls, arn: str) -> FunctionArn:
        """Parse ``arn``; raise ``ValueError`` naming the ARN when it is not a function ARN."""
        if not isinstance(arn, str):
            raise ValueError(
                f"not a Lambda function ARN: expected a string, got {type(arn).__name__}"
            )
        match = _FUNCTION_ARN.fullmatch(arn)
        if match is None:
            shown = arn if len(arn) <= 160 else f"{arn[:157]}..."
            raise ValueError(f"not a Lambda function ARN: {shown!r}")
        partition, region, account, name, qualifier = match.groups()
        return cls(arn, partition, region, account, name, qualifier)

    @property
    def unqualified(self) -> str:
        """The ARN without its qualifier: the function itself rather than a version or alias."""
        base = f"arn:{self.partition}:lambda:{self.region}:{self.account}"
        return f"{base}:function:{self.function_name}"

    @property
    def qualified_name(self) -> str:
        """``name:qualifier`` (the name alone when unqualified): which function and version or
        alias, in the short form Invoke also takes."""
        name, qualifier = self.function_name, self.qualifier
        return f"{name}:{qualifier}" if qualifier else name

    @property
    def is_version(self) -> bool:
        """Whether the qualifier names a published version (digits) rather than an alias."""
        return self.qualifier is not None and self.qualifier.isdigit()

    def __str__(self) -> str:
        return self.arn
