"""Lambda function ARNs, parsed into partition, region, account, name and qualifier."""

from __future__ import annotations

import re
from dataclasses import dataclass

# arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
# Partition and region are matched loosely (new partitions and regions keep appearing: aws-cn,
# aws-us-gov, aws-iso-b, aws-eusc ...); the name and qualifier follow Lambda's documented rules:
# names are letters, digits, hyphens and underscores (1-64); a qualifier is $LATEST, a version
# number or an alias name.
_FUNCTION_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12})"
    r":function:(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]{1,128}))?"
)

# What Lambda's Invoke takes as its FunctionName (the pattern of its API model, regions matched
# a little more loosely): a name, a partial ARN (123456789012:function:name) or an ARN, each
# maybe with :version or :alias; a name is at most 64 characters, the whole at most 256.
_INVOKE_NAME = re.compile(
    r"(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:[a-z]{2,4}(?:-[a-z]+)+-[0-9]{1,2}:)?(?:[0-9]{12}:)?"
    r"(?:function:)?(?P<name>[A-Za-z0-9_.-]{1,64})"
    r"(?::(?:\$LATEST(?:\.PUBLISHED)?|[A-Za-z0-9_-]{1,128}))?"
)
INVOKE_NAME_MAX = 256
# What to write instead of a text that is not such a function (a setting's or an option's line).
NOT_INVOKE_NAME = (
    "is not a Lambda function name or ARN: write a name (orders-api), maybe with :alias or "
    ":version, or the function's ARN (arn:aws:lambda:us-east-1:123456789012:function:orders-api)"
)


def invoke_function_name(text: str) -> str | None:
    """The function's name in ``text``, when it has the form of a function Lambda's Invoke can
    be given (a name, a partial ARN or an ARN, maybe qualified); None when it has not. Whether
    the function exists only Lambda can say."""
    match = _INVOKE_NAME.fullmatch(text) if len(text) <= INVOKE_NAME_MAX else None
    return None if match is None else match["name"]


@dataclass(frozen=True, slots=True)
class FunctionArn:
    """A parsed Lambda function ARN.

    ``qualifier`` is ``"$LATEST"``, a version number (``"7"``) or an alias (``"live"``), or
    ``None`` for an unqualified ARN. ``arn`` keeps the text exactly as given.
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
    def is_version(self) -> bool:
        """Whether the qualifier names a published version (digits) rather than an alias."""
        return self.qualifier is not None and self.qualifier.isdigit()

    def __str__(self) -> str:
        return self.arn
