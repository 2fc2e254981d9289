"""URL checks made when settings or requests are read: a URL's port, a path on the same site;
why a port could not be listened on; and a queue's name and region from its URL."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import re
import socket
import urllib.parse

from lambda_destinations.redact import echoed

# The hosts of AWS's own queue URLs, which name the queue's region.
_AWS_QUEUE_HOST = re.compile(
    r"sqs\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)"
    r"|([a-z]{2}(?:-[a-z]+)+-\d+)\.queue\.amazonaws\.com(?:\.cn)?"
)
# What a stored URL is LIKE when its host is one of those: it names a region (SQL's LIKE, in
# which a store finds them).
AWS_QUEUE_HOST_LIKE = (
    "%://sqs.%.amazonaws.com/%",
    "%://sqs.%.amazonaws.com.cn/%",
    "%://sqs.%.api.aws/%",
    "%://%.queue.amazonaws.com/%",
    "%://%.queue.amazonaws.com.cn/%",
)

PORT_PROBLEM = "the port is not a number from 0 to 65535"
IPV6_BRACKETS = "an IPv6 address in a URL goes in brackets, its port after them: {example}"
BRACKET_UNCLOSED = (
    "the URL's host has a [ without its ] (or the reverse): write an IPv6 address as [::1]"
)
# OpenSSL's reasons for a TLS handshake with a port that speaks no TLS (a plain HTTP or SMTP
# server answering the ClientHello with its own text).
NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)
# OpenSSL's verify codes (X509_V_ERR_*) of a certificate whose CA may well be trusted: its fix
# is on the server or in the host a setting names, not in cert_bundle.
CERT_FOR_ANOTHER_NAME = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
CERT_NOT_YET_VALID, CERT_HAS_EXPIRED = 9, 10
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
# A label of an endpoint's host name as botocore takes it (``botocore.utils.
# is_valid_endpoint_url``): letters, digits and hyphens, no hyphen at either end. It refuses
# any other host, and a URL with a tab or a line break, with a bare ValueError ("Invalid
# endpoint") when a client is made: a traceback.
_ENDPOINT_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def check_port(url: str) -> None:
    """ValueError (naming no part of the URL, which may hold a password) when the URL's port
    is no number from 0 to 65535: urllib checks the port only when asked, and aiohttp and the
    database drivers only when they connect, with a traceback."""
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(PORT_PROBLEM) from None


def unbracketed_ipv6(url: str) -> bool:
    """Whether ``url``'s host is an IPv6 address written without brackets (``http://::1:8080/``):
    urllib then reads a host of ``:`` or a port that is not a number, and says nothing of the
    brackets that were missing."""
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:  # a "[" without its "]": not this problem
        return False
    host_port = netloc.rpartition("@")[2]  # after the user:password@
    return not host_port.startswith("[") and host_port.count(":") > 1


def listen_problem(host: str, port: int, exc: OSError) -> tuple[str, str]:
    """Why listening on ``host:port`` failed, and which of the two to change (``"host"`` or
    ``"port"``): a name that does not resolve, or an address this machine does not have, is the
    host's fault; a port in use, or below 1024 without the right, the port's."""
    if isinstance(exc, socket.gaierror):
        return f"host {host} cannot be resolved ({exc.strerror or exc})", "host"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine", "host"
    # An IPv6 address in brackets, as a URL writes it: "::1:8080" reads as another address.
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"port {address} is in use", "port"
    return f"port {address} cannot be used ({exc.strerror or exc})", "port"


def is_site_path(text: str) -> bool:
    """Whether ``text`` is a path on the same site (``/readyz``, ``/failures?status=open``) and
    nothing a browser or a URL parser could read as another site: one leading ``/``, no
    backslash (read as ``/``), no whitespace or control character (dropped, or cutting it)."""
    return (
        text.startswith("/")
        and not text.startswith("//")
        and "\\" not in text
        and not any(c.isspace() or not c.isprintable() for c in text)
    )


def ascii_domain(name: str) -> str:
    """A domain name as DNS and mail systems take it: an ASCII name as it is, a Unicode one in
    Punycode by IDNA 2008 (UTS 46, as browsers and yarl encode it), falling back to IDNA 2003
    for what IDNA 2008 refuses (a symbol). Python's ``"idna"`` codec is IDNA 2003 alone, which
    maps ß and ς to other letters: ``faß.de`` to ``fass.de``, another domain. Raises
    UnicodeError for a name neither encodes."""
    if name.isascii():
        return name
    import idna  # lazy: only a Unicode name needs it

    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:  # a UnicodeError: what IDNA 2003 takes and IDNA 2008 does not
        return name.encode("idna").decode("ascii")


def is_host(host: str) -> bool:
    """An IP address, or a host name whose labels (in IDNA, for Unicode) are letters, digits,
    hyphens and underscores, 1 to 63 of them."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    try:
        labels = ascii_domain(host).removesuffix(".").split(".")
    except UnicodeError:
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def numeric_host_problem(host: str) -> str | None:
    """What is wrong with ``host`` (not an IP address) when it is digits and dots alone
    (``1.2.3.4.5``, ``127.1``, ``2130706433``): no name, and no IPv4 address aiohttp connects
    to (it refuses all but four numbers of 0 to 255, as no DNS lookup is made for them); None
    for any other host. The host cut as :func:`echoed` cuts what was pasted."""
    if not host.replace(".", "").isdigit():
        return None
    return (
        f"its host {echoed(host)!r} is no IPv4 address (four numbers of 0 to 255 without "
        "leading zeros, such as 127.0.0.1) and, of digits and dots alone, no host name"
    )


def host_name_problem(host: str) -> str | None:
    """What keeps ``host`` (a URL's, ASCII) from naming a host: an IP address, or a name of
    253 characters at most (a final dot aside) whose labels are 1 to 63 letters, digits,
    hyphens and underscores; None when it does. The host cut as :func:`echoed` cuts it."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    if (numeric := numeric_host_problem(host)) is not None:
        return numeric
    name = host.removesuffix(".")
    if len(name) > 253:
        return f"its host {echoed(host)!r} has {len(name):,} characters, a host name 253 at most"
    for label in name.split("."):
        if not _HOST_LABEL.fullmatch(label):
            return (
                f"its host {echoed(host)!r} is no host name: its part {echoed(label)!r} is not "
                "1 to 63 letters, digits, '-' and '_'"
            )
    return None


def endpoint_host_problem(url: str) -> str | None:
    """What keeps botocore from making a client for the endpoint ``url`` (an http(s) URL with
    a host, its port checked): a whitespace or control character in it, or a host that is
    neither an IP address nor a name of letters, digits, hyphens and dots of 255 characters
    at most (nor digits and dots alone: :func:`numeric_host_problem`); None when there is
    nothing. The problem repeats no part of the URL but its host (which holds no secret), cut
    as :func:`echoed` cuts what was pasted."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "a space, tab or control character is in it: remove it"
    host = urllib.parse.urlsplit(url).hostname or ""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.replace("%25", "%"))  # an IPv6 zone, percent-encoded
        return None
    if (numeric := numeric_host_problem(host)) is not None:
        return numeric
    labels = host.removesuffix(".").split(".")
    if all(_ENDPOINT_LABEL.fullmatch(label) for label in labels):
        if len(host) <= 255:
            return None
        return f"its host {echoed(host)!r} is longer than a host name may be (255 characters)"
    try:
        ascii_host = ascii_domain(host)
    except UnicodeError:
        ascii_host = host
    write = f": write it as {echoed(ascii_host)}" if ascii_host != host else ""
    return (
        f"its host {echoed(host)!r} is not a host name AWS's SDK takes (letters, digits, '-' "
        f"and '.', no '-' at either end of a part, no '_'){write}"
    )


def queue_name(url_or_name: str) -> str:
    """The queue's name from its URL (or the name itself). An ARN stays whole (doctor's
    rows name a queue given by ARN so): ``worker.queues.arn_name`` reads an ARN's.

    Here, not with the queues: the commands that only read the store name a row's queue, and
    the queues' module imports botocore and tenacity.
    """
    return url_or_name.rstrip("/").rsplit("/", 1)[-1]


def queue_path(url: str) -> str:
    """A queue URL's last two path segments, ``ACCOUNT/NAME``: the same queue whatever the host
    and scheme that reached it (``localstack:4566`` in a container, ``localhost:4566`` outside
    it; a VPC endpoint; SQS's legacy host)."""
    return "/".join(urllib.parse.urlsplit(url).path.rstrip("/").split("/")[-2:])


def arn_queue_url(arn: str) -> str | None:
    """The AWS URL of the queue an SQS ARN names (``arn:aws:sqs:REGION:ACCOUNT:NAME``), which
    says its region, account and name as the ARN does; None for any other text."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not all(parts[3:]):
        return None
    partition, region, account, name = parts[1], parts[3], parts[4], parts[5]
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def url_region(url: str) -> str | None:
    """The region an AWS queue URL names in its host (``sqs.eu-west-1.amazonaws.com``, the
    legacy ``eu-west-1.queue.amazonaws.com``, dual-stack ``sqs.eu-west-1.api.aws``); None for
    any other host (LocalStack's, moto's, the legacy ``queue.amazonaws.com``)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    found = _AWS_QUEUE_HOST.fullmatch(host)
    return (found.group(1) or found.group(2)) if found else None
