"""nginx in front of a server a test runs, as teams put the console and the ops server behind
an ingress: TLS ends at nginx, the server gets plain HTTP with ``X-Forwarded-*``, often under a
path prefix nginx strips. Each test starts its own nginx (Debian's; not its service) on a free
port, with a configuration in the test's folder, and ends it by its process id."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certificates import self_signed_certificate
from processes import listening, nginx_program, reap

# What an ingress adds to the requests it passes on (an ALB adds them all); Host is the
# browser's, or with ``$proxy_host`` (nginx's default) the upstream's address.
FORWARDED = """
        proxy_set_header Host {host};
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
"""


@dataclass(frozen=True)
class Proxy:
    """Where nginx listens: ``https://127.0.0.1:PORT`` (or http), a name mapped to it."""

    scheme: str
    port: int

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """How nginx passes ``prefix/…`` on: stripping the prefix (``proxy_pass`` with a path) or
    not, with the browser's Host (``$http_host``) or nginx's default, the upstream's
    (``$proxy_host``)."""

    prefix: str = ""
    strip: bool = True
    host: str = "$http_host"

    def location(self, upstream: str) -> str:
        # proxy_pass with a path ("/") replaces the prefix with it: the server sees /failures.
        passed = upstream.rstrip("/") + ("/" if self.strip else "")
        return (
            f"    location {self.prefix}/ {{\n        proxy_pass {passed};\n"
            f"{FORWARDED.format(host=self.host)}    }}\n"
        )


_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _config(folder: Path, port: int, server: str, tls: bool) -> str:
    listen = f"listen 127.0.0.1:{port};\n"
    if tls:
        cert, key = self_signed_certificate(folder)
        listen = (
            f"listen 127.0.0.1:{port} ssl;\n"
            f"    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
        )
    # Run as root, nginx's workers become nobody, who cannot enter the test's folder for the
    # temporary files of a large form or page: root's workers here (a test's loopback proxy).
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"  {kind}_temp_path {folder / kind};\n" for kind in _TEMP_PATHS)
    return (
        f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'};\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  access_log off;\n{temp}  server {{\n    {listen}{server}  }}\n}}\n"
    )


@contextlib.contextmanager
def nginx(
    folder: Path, upstream: str, *, port: int, route: Route = Route(), tls: bool = True
) -> Iterator[Proxy]:
    """nginx on ``port`` of 127.0.0.1 passing requests on to ``upstream`` as ``route`` says,
    with TLS by a self-signed certificate when ``tls``."""
    program = nginx_program()
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(_config(folder, port, route.location(upstream), tls))
    log = folder / "error.log"
    command = [program, "-p", str(folder), "-c", str(conf), "-e", str(log)]
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        _wait_listening(process, port, log)
        yield Proxy("https" if tls else "http", port)
    finally:
        process.terminate()  # nginx's fast shutdown; its workers end with it
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        reap(process)
        if process.stderr is not None:
            process.stderr.close()


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    if listening(process, port):
        return
    reap(process)
    said = process.stderr.read().decode(errors="replace") if process.stderr else ""
    written = log.read_text(errors="replace") if log.exists() else ""
    pytest.fail(f"nginx did not start: {said[-1000:]}{written[-1000:]}")
