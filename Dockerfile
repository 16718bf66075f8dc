# syntax=docker/dockerfile:1
# check=skip=SecretsUsedInArgOrEnv
# (REDIS_PASSWORD is declared empty on purpose; the real value comes from the
# environment at run time, e.g. a Kubernetes Secret.)

# strategyq worker image.
#   docker build -t worker:latest .
#   docker run -e REDIS_HOST=cache -e REDIS_PASSWORD=... -v /srv/strategyq:/data:ro worker:latest

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: compilers allowed here only -----------------------------------
FROM ${PYTHON_IMAGE} AS builder

# A compiler for any dependency that has no binary wheel for the target platform.
# Versions are not pinned so that a rebuild picks up Debian security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/strategyq

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src

# Build the project's wheel, then install it (and its dependencies) into the venv
# that the runtime stage copies as a whole.
RUN /opt/strategyq/bin/pip wheel --no-deps --wheel-dir /build/wheels . \
 && /opt/strategyq/bin/pip install --prefer-binary /build/wheels/strategyq-*.whl

# ---- runtime: no compilers, no build tools ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# libseccomp is loaded by the sandbox's seccomp layer; tini reaps sandbox processes
# orphaned by a crashed executor and passes SIGTERM on to the worker.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libseccomp2 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 strategyq \
 && useradd --system --uid 10001 --gid strategyq --home-dir /home/strategyq \
      --create-home --shell /usr/sbin/nologin strategyq \
 && install -d -o strategyq -g strategyq -m 0750 /data

COPY --from=builder /opt/strategyq /opt/strategyq

# The seed's Redis settings; REDIS_PASSWORD stays empty in the image.
# hadolint ignore=DL3064
ENV PATH=/opt/strategyq/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STRATEGYQ_HOME=/data \
    STRATEGYQ_METRICS_PORT=9100 \
    STRATEGYQ_METRICS_HOST=0.0.0.0 \
    REDIS_HOST=cache \
    REDIS_PORT=6379 \
    REDIS_PASSWORD=""

WORKDIR /home/strategyq
USER 10001:10001

EXPOSE 9100
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STRATEGYQ_METRICS_PORT', '9100'), timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "strategyq"]
CMD ["worker"]
