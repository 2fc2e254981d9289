# lambda-destinations worker image.
#
#   docker build -t lambda-destinations .
#   docker run --rm -p 8080:8080 -v ld-data:/var/lib/lambda-destinations \
#     -e LAMBDA_DESTINATIONS_QUEUES=orders-success,orders-failure -e AWS_REGION=eu-west-1 \
#     lambda-destinations
#
# BASE_IMAGE must be a Debian-like image with python3 (3.11 or later) and its venv module.
# Builds without access to PyPI: mount a folder of wheels and a pip.conf that points at it,
#   buildah bud --format docker -v "$PWD/wheels:/wheels:ro" --build-arg PIP_CONFIG_FILE=/wheels/pip.conf .
# (buildah's default OCI format has no HEALTHCHECK: --format docker keeps it.)
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_CONFIG_FILE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The wheel first (no tests, no sources in the image), then it with its runtime and
# PostgreSQL dependencies in a virtual environment the final stage copies whole. Its bytecode
# is compiled here, once: the image runs read-only with PYTHONDONTWRITEBYTECODE, so without it
# every process (the worker's start, each `healthcheck`, each operator command) would compile
# every module it imports again. unchecked-hash: the copy into the final stage may change the
# files' times, which timestamp-checked bytecode would take as stale (-f rewrites what the venv's
# own setuptools came with, which is timestamp-checked). Left out, as nothing here
# imports them: phonenumbers' place names, carriers and time zones (22 MB of bytecode) and
# setuptools.
RUN python3 -m venv /opt/lambda-destinations \
    && /opt/lambda-destinations/bin/pip wheel --no-deps --wheel-dir /tmp/dist . \
    && /opt/lambda-destinations/bin/pip install --no-compile "$(ls /tmp/dist/lambda_destinations-*.whl)[postgres,uvloop]" \
    && /opt/lambda-destinations/bin/pip uninstall --yes pip \
    && /opt/lambda-destinations/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
        -x '/(phonenumbers/(geodata|carrierdata|tzdata)|setuptools|pkg_resources)/' \
        /opt/lambda-destinations/lib

FROM ${BASE_IMAGE}
# A fixed uid/gid, so a volume's ownership can be prepared outside the image. The volume's
# folder belongs to group 0 as well, with the user's permissions: OpenShift's restricted policy
# runs the image as an arbitrary uid whose group is 0 (the uid has no passwd entry, HOME is /).
ARG UID=10001
# The standard library's bytecode too, where the base has none (python:*-slim removes it);
# a base that has it (Debian's python3) is left as it is.
RUN groupadd --system --gid "${UID}" lambda-destinations \
    && useradd --system --uid "${UID}" --gid "${UID}" --no-create-home \
        --home-dir /var/lib/lambda-destinations --shell /usr/sbin/nologin lambda-destinations \
    && mkdir -p /var/lib/lambda-destinations \
    && chown "${UID}:0" /var/lib/lambda-destinations \
    && chmod g=u /var/lib/lambda-destinations \
    && python3 -m compileall -q -j 0 -x '/(test|tests|idlelib|lib2to3|tkinter|turtledemo|site-packages|dist-packages)/' \
        "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
COPY --from=build /opt/lambda-destinations /opt/lambda-destinations
ENV PATH=/opt/lambda-destinations/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LAMBDA_DESTINATIONS_LOG_FORMAT=json \
    LAMBDA_DESTINATIONS_STORE=sqlite:////var/lib/lambda-destinations/results.db \
    SQLITE_TMPDIR=/var/lib/lambda-destinations \
    LAMBDA_DESTINATIONS_OPS_PORT=8080
# SQLite's temporary files (a VACUUM's copy of the file, a sort past its cache) go on the
# volume, beside the store, not to /var/tmp or /tmp: on a read-only root those are a tmpfs
# (memory, counted against the container's limit) or a small emptyDir, or not writable at all.
WORKDIR /var/lib/lambda-destinations
VOLUME ["/var/lib/lambda-destinations"]
USER ${UID}:${UID}
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["lambda-destinations", "healthcheck"]
ENTRYPOINT ["lambda-destinations"]
CMD ["run"]
