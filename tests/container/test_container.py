"""The image: built from the repository's Dockerfile with buildah, run with podman.

Registries are unreachable here, so the base is a stand-in made with debootstrap (Debian's
python3 inside), passed as BASE_IMAGE; it is cached between runs (LAMBDA_DESTINATIONS_CI_CACHE,
default ~/.cache/lambda-destinations-ci). pip inside the build gets the project's wheels, built
on this machine, through a mounted folder and PIP_CONFIG_FILE: what a user without PyPI would
do too (see the Dockerfile's header). The container runs on the host network against the
tests' moto server, drains 100 records into SQLite on a volume, answers the three probes from
outside, runs as a non-root uid and stops with exit 0 within shutdown_grace + 2 s.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lambda_destinations.simulate import failure_record, success_record
from processes import free_port

# On a machine without the cached base, debootstrap alone takes minutes (2.5 on a quiet
# 2-core machine), then the build: the suite's default timeout of 120 s does not fit.
pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/lambda-destinations-test-base:bookworm"
STORAGE = ["--storage-driver", "overlay"]
PODMAN = [
    "podman",
    *STORAGE,
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
]
RUN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
UID = 10001
GRACE = 5
RECORDS = 100
# What `run` imports on its way to draining: each must load from bytecode the build compiled.
WORKER_MODULES = (
    "lambda_destinations.cli.run",
    "lambda_destinations.worker.worker",
    "lambda_destinations.store.sqlite",
    "lambda_destinations.store.postgres",
    "lambda_destinations.handlers",
    "aiobotocore.session",
    "uvloop",
)


def tools_or_skip() -> None:
    missing = [tool for tool in ("buildah", "podman", "debootstrap") if not shutil.which(tool)]
    if missing:
        reason = f"needs {', '.join(missing)} (apt-get install buildah podman debootstrap runc)"
        if os.environ.get("LAMBDA_DESTINATIONS_REQUIRE_CONTAINER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def sh(*args: str, timeout: float = 900) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org when none is found)."""
    for path in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(
        Path("/etc/apt/sources.list.d").glob("*")
    ):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in words[1]:
                return words[-3] if words[1].startswith("[") else words[1]
    return "http://deb.debian.org/debian"


def base_image(cache: Path) -> str:
    """Import (once) a debootstrap'd Debian with python3 as the stand-in base image."""
    exists = subprocess.run([*PODMAN, "image", "exists", BASE_IMAGE], check=False)
    if exists.returncode == 0:
        return BASE_IMAGE
    rootfs = cache / "rootfs"
    if not rootfs.exists():
        # Built aside and renamed when complete: an interrupted debootstrap (which may leave
        # /proc mounted in its tree) never stands in the cache as a base.
        partial = Path(tempfile.mkdtemp(prefix="rootfs.partial-", dir=cache))
        sh(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(partial),
            debian_mirror(),
            timeout=1800,
        )
        partial.rename(rootfs)
    tarball = cache / "rootfs.tar"
    sh("tar", "-C", str(rootfs), "-cf", str(tarball), ".")
    sh("podman", *STORAGE, "import", str(tarball), BASE_IMAGE)
    tarball.unlink()
    return BASE_IMAGE


def wheelhouse(folder: Path) -> Path:
    """The project's wheel, its dependencies (with postgres) and its build backend."""
    folder.mkdir()
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder),
       f"{REPO}[postgres,uvloop]", "hatchling")  # fmt: skip
    (folder / "pip.conf").write_text("[global]\nno-index = true\nfind-links = /wheels\n")
    return folder


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def env_options(queue: str, endpoint: str, port: int, **more: str) -> list[str]:
    """podman's --env options for a worker on ``queue`` at the tests' moto server."""
    env = {
        "LAMBDA_DESTINATIONS_QUEUES": queue,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_OPS_PORT": str(port),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **more,
    }
    return [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]


def stop(name: str, timeout: int) -> tuple[float, str, str]:
    """``podman stop`` the container: the seconds it took, its exit code and its log (stderr)."""
    started = time.monotonic()
    sh(*PODMAN, "stop", "--time", str(timeout), name)
    took = time.monotonic() - started
    exit_code = sh(*PODMAN, "inspect", "--format", "{{.State.ExitCode}}", name).strip()
    logs = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True, check=False)
    return took, exit_code, logs.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tools_or_skip()
    default_cache = Path.home() / ".cache" / "lambda-destinations-ci"
    cache = Path(os.environ.get("LAMBDA_DESTINATIONS_CI_CACHE", default_cache))
    cache.mkdir(parents=True, exist_ok=True)
    base = base_image(cache)
    wheels = wheelhouse(tmp_path_factory.mktemp("build") / "wheels")
    tag = f"localhost/lambda-destinations-test:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    sh("buildah", "bud", "--format", "docker", "--isolation", "chroot", *STORAGE,
       "--build-arg", f"BASE_IMAGE={base}",
       "--build-arg", "PIP_CONFIG_FILE=/wheels/pip.conf",
       "--volume", f"{wheels}:/wheels:ro",
       "--tag", tag, "--file", str(REPO / "Dockerfile"), str(REPO))  # fmt: skip
    built = time.monotonic() - started
    size = sh("podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}", tag).strip()
    base_size = sh("podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}", base).strip()
    print(f"\nimage {tag}: built in {built:.0f}s, {int(size) / 1e6:.0f} MB "
          f"({(int(size) - int(base_size)) / 1e6:.0f} MB over the base)")  # fmt: skip
    try:
        yield tag
    finally:
        subprocess.run([*PODMAN, "rmi", "--force", tag], check=False)


def test_the_image_drains_into_sqlite_answers_probes_runs_unprivileged_and_stops_cleanly(
    image, sqs, make_queue, moto_server, tmp_path
) -> None:
    # given: 100 records on a queue, a volume folder the image's uid owns
    url, _dlq = make_queue("container")
    rng = random.Random(12)
    records = [success_record(rng) for _ in range(RECORDS)]
    for start in range(0, RECORDS, 10):
        entries = [
            {"Id": str(i), "MessageBody": json.dumps(r)}
            for i, r in enumerate(records[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
    volume = tmp_path / "data"
    volume.mkdir()
    os.chown(volume, UID, UID)
    port = free_port()
    name = f"ld-test-{uuid.uuid4().hex[:8]}"
    options = env_options(
        url,
        moto_server,
        port,
        LAMBDA_DESTINATIONS_SHUTDOWN_GRACE=str(GRACE),
        LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL="1",
    )

    # when: the image runs on the host network with the folder as its volume
    sh(*PODMAN, "run", "--detach", "--name", name, "--network", "host", *RUN_LIMITS,
       "--volume", f"{volume}:/var/lib/lambda-destinations", *options, image)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        acked = 0.0
        while acked < RECORDS:
            assert time.monotonic() < deadline, sh("podman", *STORAGE, "logs", name)
            time.sleep(0.5)
            try:
                _status, text = get(port, "/metrics")
            except OSError:
                continue
            acked = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "lambda_destinations_messages_total"
                and sample.labels.get("outcome") == "ack"
            )
        healthz, readyz = get(port, "/healthz"), get(port, "/readyz")
        # the image's HEALTHCHECK command, run inside it as the orchestrator would
        healthcheck = subprocess.run(
            [*PODMAN, "exec", name, "lambda-destinations", "healthcheck", "--path", "/readyz"],
            capture_output=True,
            text=True,
            check=False,
        )
        # and the HEALTHCHECK the image declares (kept only in the docker format)
        declared = subprocess.run(
            [*PODMAN, "healthcheck", "run", name], capture_output=True, text=True, check=False
        )
        pid = sh(*PODMAN, "inspect", "--format", "{{.State.Pid}}", name).strip()
        uids = next(
            line.split()[1:]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )

        # then: stop ends it with 0 within the grace + 2 s
        stop_took, exit_code, logs = stop(name, GRACE + 10)
    finally:
        subprocess.run([*PODMAN, "rm", "--force", name], capture_output=True, check=False)

    assert healthz[0] == 200, healthz
    assert readyz == (200, json.dumps({"status": "ready"}))
    assert uids == [str(UID)] * 4
    assert healthcheck.returncode == 0, healthcheck.stderr
    assert healthcheck.stdout.strip() == f"http://127.0.0.1:{port}/readyz: 200"
    assert declared.returncode == 0, declared.stdout + declared.stderr
    assert exit_code == "0", logs
    assert stop_took <= GRACE + 2, f"podman stop took {stop_took:.1f}s"
    # every record once in the SQLite file on the volume, written by the image's uid
    database = volume / "results.db"
    assert database.stat().st_uid == UID
    with sqlite3.connect(database) as connection:
        stored = {row[0] for row in connection.execute("SELECT request_id FROM invocations")}
    assert stored == {r["requestContext"]["requestId"] for r in records}
    # the logs are JSON lines by default, and the worker ran on uvloop (the image's extra)
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert all(lines)
    assert [ln["event_loop"] for ln in lines if ln["event"] == "worker started"] == ["uvloop"]


def test_the_image_runs_every_module_from_the_bytecode_it_was_built_with(image) -> None:
    """The image runs read-only with PYTHONDONTWRITEBYTECODE: a module without bytecode in it is
    compiled again by every process that imports it (the worker's start, each healthcheck).
    ``python -v`` names where each module's code came from: a ``.pyc``, or the source."""
    # when: the worker's modules are imported in the image, as its user
    done = subprocess.run(
        [*PODMAN, "run", "--rm", *RUN_LIMITS, "--entrypoint", "python3", image,
         "-v", "-c", "import " + ", ".join(WORKER_MODULES)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = [
        line.removeprefix("# code object from ").strip("'")
        for line in done.stderr.splitlines()
        if line.startswith("# code object from ")
    ]

    # then: hundreds came from the venv's bytecode, and none was compiled from its source
    assert sum(path.startswith("/opt/lambda-destinations/") for path in loaded) > 300
    compiled_here = [path for path in loaded if path.endswith(".py")]
    assert compiled_here == [], compiled_here[:20]


def test_the_image_runs_as_an_arbitrary_uid_of_group_0_as_openshift_runs_it(
    image, sqs, make_queue, moto_server
) -> None:
    """OpenShift's restricted policy: a uid of the project's range, group 0, no passwd entry,
    HOME=/ (podman's --passwd=false). The image's volume folder belongs to group 0 with the
    user's permissions: the worker creates its store there."""
    # given: records on a queue
    url, _dlq = make_queue("openshift")
    rng = random.Random(14)
    records = [failure_record(rng) for _ in range(20)]
    for record in records:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    port = free_port()
    name = f"ld-test-{uuid.uuid4().hex[:8]}"
    options = env_options(url, moto_server, port, HOME="/")

    # when: the image runs as uid 1000870000, group 0, on its own (anonymous) volume
    sh(*PODMAN, "run", "--detach", "--name", name, "--network", "host", *RUN_LIMITS,
       "--user", "1000870000:0", "--passwd=false", "--read-only", *options, image)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while get_or_none(port, "/readyz") != 200:
            assert time.monotonic() < deadline, sh(*PODMAN, "logs", name)
            time.sleep(0.5)

        def exec_(*args: str) -> subprocess.CompletedProcess[str]:
            command = [*PODMAN, "exec", name, "lambda-destinations", *args]
            return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

        while True:  # the operator's commands, as `oc exec` runs them: the same uid
            listed = exec_("failures", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            if len(json.loads(listed.stdout)) == len(records) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        healthcheck = exec_("healthcheck")
        no_user = exec_("failures", "list", "--store", "postgresql://127.0.0.1:5432/postgres")
    finally:
        subprocess.run([*PODMAN, "rm", "--force", name], capture_output=True, check=False)

    # then: every record stored, the probe answered, and a URL without a user is one line
    assert {r["request_id"] for r in json.loads(listed.stdout)} == {
        r["requestContext"]["requestId"] for r in records
    }
    assert healthcheck.returncode == 0, healthcheck.stderr
    assert no_user.returncode == 3, no_user.stderr
    assert "Traceback" not in no_user.stderr
    assert "the URL names no user, and this process's uid 1000870000 has no name" in (
        no_user.stderr
    )


def get_or_none(port: int, path: str) -> int | None:
    try:
        return get(port, path)[0]
    except OSError:
        return None


def test_a_vacuum_on_a_read_only_root_keeps_its_temporary_copy_on_the_volume(
    image, tmp_path
) -> None:
    """SQLite writes a VACUUM's copy of the file to its temporary folder: the first writable of
    /var/tmp, /usr/tmp, /tmp. On a read-only root that is the small /tmp a template mounts (an
    emptyDir of 64 MiB; here a tmpfs of 1 MiB), or a tmpfs counted against the memory limit.
    The image points SQLITE_TMPDIR at the volume, beside the store."""
    # given: a store of some 10 MB on the volume
    volume = tmp_path / "data"
    volume.mkdir()
    store = volume / "results.db"
    with sqlite3.connect(store) as connection:
        connection.execute("CREATE TABLE filler (blob TEXT)")
        connection.executemany("INSERT INTO filler VALUES (?)", [("x" * 100_000,)] * 100)
    done = subprocess.run(
        [sys.executable, "-m", "lambda_destinations", "migrate", "--store", f"sqlite:///{store}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in volume.iterdir():
        os.chown(path, UID, UID)
    os.chown(volume, UID, UID)

    # when: prune --vacuum runs on a read-only root whose /tmp holds 1 MiB
    vacuum = subprocess.run(
        [*PODMAN, "run", "--rm", *RUN_LIMITS, "--read-only", "--read-only-tmpfs=false",
         "--tmpfs", "/tmp:size=1m,mode=1777",  # noqa: S108 (the container's /tmp)
         "--volume", f"{volume}:/var/lib/lambda-destinations", image, "prune", "--vacuum"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip

    # then: it ran, its copy on the volume (before: "database or disk is full", exit 4)
    assert vacuum.returncode == 0, vacuum.stderr
    assert "VACUUM: the file and its write-ahead log took" in vacuum.stderr


def test_a_volume_of_another_uid_is_one_line_naming_the_chown(image, tmp_path) -> None:
    """A bind-mounted folder the host's root made (mode 755): the image's uid cannot create
    its store there. The line names the folder's mode and owner and the chown by uid, which
    the host knows (it has no user named lambda-destinations); before, it said only "use a path
    in a writable directory"."""
    # given: the volume's folder belongs to root
    volume = tmp_path / "data"
    volume.mkdir(mode=0o755)

    # when: the store is made there (as `run` makes it at its start)
    done = subprocess.run(
        [*PODMAN, "run", "--rm", *RUN_LIMITS,
         "--volume", f"{volume}:/var/lib/lambda-destinations", image, "migrate"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip

    # then: exit 3, one line (JSON, as the image's logs are), no traceback
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    last = json.loads(done.stderr.splitlines()[-1])
    assert (last["level"], last["exit_code"]) == ("error", 3)
    assert last["event"] == (
        "store URL 'sqlite:////var/lib/lambda-destinations/results.db' "
        "(LAMBDA_DESTINATIONS_STORE): cannot create /var/lib/lambda-destinations/results.db: "
        "the folder /var/lib/lambda-destinations (mode 755, owner root) is not writable for user "
        "lambda-destinations, and SQLite creates the file there: fix its permissions or owner "
        f"(chown {UID} /var/lib/lambda-destinations)"
    )


def test_the_console_stops_on_the_containers_sigterm(image, tmp_path) -> None:
    """The first process of a container (pid 1) gets no signal it has no handler for: SIGTERM's
    default action does not end it. `console` had none, so `podman stop` waited out its timeout
    and killed it (exit 137); it now leaves as on a Ctrl-C, exit 143."""
    # given: a migrated store on the volume, the image's uid's
    volume = tmp_path / "data"
    volume.mkdir()
    store = f"sqlite:///{volume}/results.db"
    done = subprocess.run(
        [sys.executable, "-m", "lambda_destinations", "migrate", "--store", store],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in [volume, *volume.iterdir()]:
        os.chown(path, UID, UID)
    port = free_port()
    name = f"ld-test-{uuid.uuid4().hex[:8]}"

    # when: the console serves in the container, then the container is stopped
    sh(*PODMAN, "run", "--detach", "--name", name, "--network", "host", *RUN_LIMITS,
       "--volume", f"{volume}:/var/lib/lambda-destinations", image,
       "console", "--host", "127.0.0.1", "--port", str(port))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while get_or_none(port, "/login") is None:
            assert time.monotonic() < deadline, sh(*PODMAN, "logs", name)
            time.sleep(0.2)
        stop_took, exit_code, logs = stop(name, 10)
    finally:
        subprocess.run([*PODMAN, "rm", "--force", name], capture_output=True, check=False)

    # then: it stopped at once, with SIGTERM's code and its one line
    assert exit_code == "143", logs
    assert stop_took < 5, f"podman stop took {stop_took:.1f}s"
    last = json.loads(logs.splitlines()[-1])  # the image's JSON logs: its line JSON too
    assert (last["event"], last["level"], last["exit_code"]) == ("terminated", "warning", 143)
