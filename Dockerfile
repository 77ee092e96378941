# syntax=docker/dockerfile:1
# One image per service, built from the same source:
#   docker build --target app -t sustainbot-app .
#   docker build --target exporter -t sustainbot-log-exporter .
#   docker build --target exporter-cloudwatch -t sustainbot-log-exporter-cloudwatch .
#   docker build --target cloudwatch-emulator -t sustainbot-cloudwatch-emulator .
#   docker build --target log-rotator -t sustainbot-log-rotator .
# Stamp the OCI labels with what is being built:
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" --target exporter .
# Arguments after the image name go to the program, as with node_exporter's image:
#   docker run sustainbot-log-exporter --help               (log-exporter serve --help)
#   docker run sustainbot-app token --actor ci --role analyst
# Every target is built for real and run as containers by `make test-images` (in CI too):
# scripts/build-images.sh builds them all with podman (on a Debian 12 stand-in for
# python:3.11-slim where no registry can be reached), and tests/images runs the app and the
# exporter sharing their volumes as compose does, the flags, versions, health checks, stop,
# contents and sizes, the rotator and the CloudWatch variant against the emulator image
# (docs/deployment.md). tests/deploy also checks this file offline (targets, users, checks).

ARG PYTHON_IMAGE=python:3.11-slim
# The OCI image labels (org.opencontainers.image.*): set them at build time; the defaults say
# only what is known without the build's help.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/sustainbot/sustainbot-observability

# Build the project wheel once; the runtime stages install it with their own extras, so no
# source tree or build tooling ends up in a runtime image.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md build_revision.py ./
COPY sustainbot/ sustainbot/
COPY log_exporter/ log_exporter/
# The git commit for `--version` and log_exporter_build_info: the context has no .git, so it is
# passed in (docker build --build-arg REVISION="$(git rev-parse HEAD)"); build_revision.py
# writes it into the wheel. Without it the programs say revision "unknown".
ARG REVISION=""
RUN SOURCE_REVISION="${REVISION}" \
    pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="SustainBot"
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
LABEL org.opencontainers.image.title="sustainbot" \
      org.opencontainers.image.description="SustainBot: governed AI workflows that write JSONL governance events"
COPY --from=wheel /wheels/ /tmp/wheels/
# The wheel is installed by path, so no package index can substitute a same-named project.
RUN pip install "$(ls /tmp/wheels/*.whl)[app]" && rm -rf /tmp/wheels
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
# The program is the entrypoint and the subcommand the default arguments, so
# `docker run IMAGE serve --workers 4` or `docker run IMAGE token ...` do what they say.
ENTRYPOINT ["sustainbot"]
CMD ["serve", "--host", "0.0.0.0", "--port", "5000"]

FROM runtime AS exporter
LABEL org.opencontainers.image.title="log-exporter" \
      org.opencontainers.image.description="log-exporter: SustainBot's sidecar deriving Prometheus and CloudWatch metrics from its event log"
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
# `serve` is part of the entrypoint, as node_exporter's and mtail's images run their server:
# `docker run IMAGE --web.listen-address=:9464` passes the flags to the server. The other
# subcommands need the program alone: `docker run --entrypoint log-exporter IMAGE replay ...`.
ENTRYPOINT ["log-exporter", "serve"]
CMD []

FROM exporter AS exporter-cloudwatch
LABEL org.opencontainers.image.title="log-exporter-cloudwatch" \
      org.opencontainers.image.description="log-exporter with CloudWatch Logs and Metrics shipping"
USER root
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install "$(ls /tmp/wheels/*.whl)[exporter,cloudwatch]" && rm -rf /tmp/wheels
USER 10001:10001
ENV CLOUDWATCH_ENABLED=true

# A local stand-in for AWS (compose profile `cloudwatch`): moto's server, pinned to the version the
# test suite runs against, so the demo and the tests exercise the same emulator.
FROM runtime AS cloudwatch-emulator
LABEL org.opencontainers.image.title="sustainbot-cloudwatch-emulator" \
      org.opencontainers.image.description="moto's server as a local stand-in for CloudWatch (compose profile cloudwatch)"
RUN pip install "moto[server]==5.2.5"
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/moto-api/data.json', timeout=4)"]
ENTRYPOINT ["moto_server"]
CMD ["-H", "0.0.0.0", "-p", "5000"]

# The pod's log rotation (deploy/kubernetes): Debian's logrotate, run in a loop by the manifest.
# The runtime stage's user and directories, so the rotated files keep the log volume's owner.
FROM runtime AS log-rotator
# apt-get clean: the package caches (75 MB) go only where the base's own apt hook removes them.
# logrotate's state directory is the user's, as the sidecar's is: a volume mounted there for the
# state (the root filesystem is read-only) takes that owner, and root's would refuse the writes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends logrotate \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/logrotate \
 && chown 10001:10001 /var/lib/logrotate
USER 10001:10001
CMD ["logrotate", "--version"]
