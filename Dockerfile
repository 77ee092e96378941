# syntax=docker/dockerfile:1
# One image per service, built from the same source:
#   docker build --target app -t sustainbot-app .
#   docker build --target exporter -t sustainbot-log-exporter .
#   docker build --target exporter-cloudwatch -t sustainbot-log-exporter-cloudwatch .
#   docker build --target cloudwatch-emulator -t sustainbot-cloudwatch-emulator .
#   docker build --target log-rotator -t sustainbot-log-rotator .
# No Docker engine was available where this file was written: it is validated offline by
# tests/deploy (targets, users, health checks), not by a build.

ARG PYTHON_IMAGE=python:3.11-slim

# Build the project wheel once; the runtime stages install it with their own extras, so no
# source tree or build tooling ends up in a runtime image.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sustainbot/ sustainbot/
COPY log_exporter/ log_exporter/
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The app and the sidecar share the log volume, so they share one uid/gid; a named volume
# takes the ownership of the directory it is mounted over on first use.
RUN groupadd --system --gid 10001 sustainbot \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin sustainbot \
 && mkdir -p /var/log/sustainbot /var/lib/log-exporter \
 && chown 10001:10001 /var/log/sustainbot /var/lib/log-exporter
ENV JSON_LOG_PATH=/var/log/sustainbot/sustainbot.jsonl

FROM runtime AS app
COPY --from=wheel /wheels/ /tmp/wheels/
# The wheel is installed by path, so no package index can substitute a same-named project.
RUN pip install "$(ls /tmp/wheels/*.whl)[app]" && rm -rf /tmp/wheels
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
CMD ["sustainbot", "serve", "--host", "0.0.0.0", "--port", "5000"]

FROM runtime AS exporter
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install "$(ls /tmp/wheels/*.whl)[exporter]" && rm -rf /tmp/wheels
# Inside a container the port is only reachable through the container network; publishing
# it on the host is the compose file's decision (127.0.0.1 only there).
ENV LOG_EXPORTER_FILE=/var/log/sustainbot/sustainbot.jsonl \
    LOG_EXPORTER_LISTEN=0.0.0.0:9464 \
    LOG_EXPORTER_STATE=/var/lib/log-exporter/state.json
USER 10001:10001
EXPOSE 9464
# /readyz, not /healthz: the sidecar is only useful once it has read the existing log.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/readyz', timeout=4)"]
CMD ["log-exporter", "serve"]

FROM exporter AS exporter-cloudwatch
USER root
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install "$(ls /tmp/wheels/*.whl)[exporter,cloudwatch]" && rm -rf /tmp/wheels
USER 10001:10001
ENV CLOUDWATCH_ENABLED=true

# A local stand-in for AWS (compose profile `cloudwatch`): moto's server, pinned to the version the
# test suite runs against, so the demo and the tests exercise the same emulator.
FROM runtime AS cloudwatch-emulator
RUN pip install "moto[server]==5.2.5"
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/moto-api/data.json', timeout=4)"]
CMD ["moto_server", "-H", "0.0.0.0", "-p", "5000"]

# The pod's log rotation (deploy/kubernetes): Debian's logrotate, run in a loop by the manifest.
# The runtime stage's user and directories, so the rotated files keep the log volume's owner.
FROM runtime AS log-rotator
RUN apt-get update \
 && apt-get install -y --no-install-recommends logrotate \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
CMD ["logrotate", "--version"]
