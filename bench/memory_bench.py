"""The worker's memory under a container's limit, draining records near SQS's 1 MiB.

Runs the image (built beforehand: see tests/container) with podman under ``--memory`` on a
queue of a moto server this script starts, filled with ``--records`` records whose payload is
a list of small objects (DynamoDB's JSON shape, ``{"S": "v1"}``: about 21 times its JSON's
bytes once decoded, more than a text of the same size), and prints the container's peak
memory (its cgroup's, page cache included) and whether it was killed.

    python bench/memory_bench.py --image localhost/lambda-destinations-test:TAG
    python bench/memory_bench.py --image … --memory 512m --bytes-in-flight 33554432

On the 5 December machine, 100 records of 1,000,000 bytes, concurrency 32, --memory 512m:
before bytes_in_flight, killed (exit 137: the kernel's OOM killer) at every start; with the
default 8 MiB, drained, peak 405 MiB (page cache included; RSS sampled 300 MiB); at
--memory 1024m before it, drained at a peak of 737 MiB.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import time
import uuid
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from lambda_destinations.simulate import failure_record

PODMAN = ["podman", "--storage-driver", "overlay", "--runtime", "runc",
          "--cgroup-manager", "cgroupfs"]  # fmt: skip


def fill(endpoint: str, records: int, size: int) -> str:
    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto takes any
    )
    name = f"memory-{uuid.uuid4().hex[:6]}"
    url = sqs.create_queue(QueueName=name, Attributes={"MaximumMessageSize": "1048576"})
    rng = random.Random(7)
    for _ in range(records):
        record = failure_record(rng)
        items = (size - len(json.dumps(record)) - 40) // 13
        record["requestPayload"] = {"Items": [{"S": f"v{k % 10}"} for k in range(items)]}
        sqs.send_message(QueueUrl=url["QueueUrl"], MessageBody=json.dumps(record))
    return name


def peak(container: str) -> int:
    """The container's cgroup's peak memory, in bytes (cgroup v1 or v2)."""
    ident = subprocess.run([*PODMAN, "inspect", "--format", "{{.Id}}", container],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        for found in Path("/sys/fs/cgroup").rglob(name):
            if ident in str(found):
                return int(found.read_text())
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--memory", default="512m")
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--bytes-in-flight", type=int, default=None)
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    queue = fill(endpoint, args.records, args.size)
    name = f"ld-memory-{uuid.uuid4().hex[:6]}"
    env = {"LAMBDA_DESTINATIONS_QUEUES": queue, "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
           "LAMBDA_DESTINATIONS_REGION": "us-east-1", "LAMBDA_DESTINATIONS_OPS_PORT": "0",
           "LAMBDA_DESTINATIONS_WAIT_TIME": "1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip
    if args.bytes_in_flight:
        env["LAMBDA_DESTINATIONS_BYTES_IN_FLIGHT"] = str(args.bytes_in_flight)
    options = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    try:
        subprocess.run([*PODMAN, "run", "--detach", "--name", name, "--network", "host",
                        "--memory", args.memory, "--memory-swap", args.memory, "--read-only",
                        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                        *options, args.image, "run", "--once"], check=True,
                       capture_output=True)  # fmt: skip
        most = 0
        while True:
            state = subprocess.run([*PODMAN, "inspect", "--format", "{{.State.Running}} "
                                    "{{.State.ExitCode}}", name], capture_output=True,
                                   text=True, check=True).stdout.split()  # fmt: skip
            most = max(most, peak(name))
            if state[0] != "true":
                break
            time.sleep(0.5)
        logs = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True).stderr
        stopped = [ln for ln in logs.splitlines() if '"worker stopped"' in ln]
        summary = f"acked {json.loads(stopped[-1])['acked']}" if stopped else "no summary"
        print(f"{args.records} records of {args.size} bytes, --memory {args.memory}: exit "
              f"{state[1]}{' (killed)' if state[1] == '137' else ''}, peak {most / 2**20:.0f} "
              f"MiB; {summary}")  # fmt: skip
    finally:
        subprocess.run([*PODMAN, "rm", "--force", name], capture_output=True, check=False)
        server.stop()


if __name__ == "__main__":
    main()
