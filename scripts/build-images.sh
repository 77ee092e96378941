#!/usr/bin/env bash
# Builds every Dockerfile target with podman, tagged as docker-compose.yml and the Kubernetes
# manifests name them, with the OCI labels filled in (version from pyproject.toml, the git commit,
# the build time):
#
#   scripts/build-images.sh                      # all targets
#   scripts/build-images.sh exporter app         # only these
#
# The base is python:3.11-slim when it can be pulled. Where no registry can be reached (CI), a
# stand-in is made once from Debian 12 (its Python is 3.11) with debootstrap and imported into
# podman; later runs reuse it. It carries this machine's CA bundle and pip's index settings, so a
# build behind a TLS proxy reaches the package index as the host does.
#
# Environment:
#   PYTHON_IMAGE    the base to use, skipping the choice above
#   REBUILD_BASE=1  make the stand-in again
#   GIT_REVISION    the commit for the revision label (default: git rev-parse HEAD)
#   CREATED         the creation label (default: now, UTC)
#   PODMAN_RUNTIME  an OCI runtime for podman (default: runc, or scripts/runc-without-limits where
#                   runc cannot apply a container's limits, as in some CI sandboxes)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v podman >/dev/null || { echo "podman is not installed (Debian package 'podman')" >&2; exit 1; }

ALL_TARGETS=(app exporter exporter-cloudwatch cloudwatch-emulator log-rotator)
if (($#)); then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
REVISION="${GIT_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
CREATED="${CREATED:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}"
REAL_BASE=docker.io/library/python:3.11-slim
STANDIN=localhost/sustainbot-python-standin:3.11-bookworm

image_name() {
  case "$1" in
    app) echo sustainbot-app ;;
    exporter) echo sustainbot-log-exporter ;;
    exporter-cloudwatch) echo sustainbot-log-exporter-cloudwatch ;;
    cloudwatch-emulator) echo sustainbot-cloudwatch-emulator ;;
    log-rotator) echo sustainbot-log-rotator ;;
    *) echo "unknown target: $1 (targets: ${ALL_TARGETS[*]})" >&2; return 1 ;;
  esac
}

# The Debian mirror apt already uses here, so debootstrap goes where the machine may go.
debian_mirror() {
  local uri
  uri="$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
           /etc/apt/sources.list.d/*.sources 2>/dev/null \
         | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

# pip's index settings on this machine, as a pip.conf for the stand-in: only http(s) indexes, since
# a file:// index on the host is not inside the build.
pip_conf() {
  local index extra=()
  index="${PIP_INDEX_URL:-$(pip3 config get global.index-url 2>/dev/null || true)}"
  for url in ${PIP_EXTRA_INDEX_URL:-$(pip3 config get global.extra-index-url 2>/dev/null || true)}; do
    [[ "$url" == http* ]] && extra+=("$url")
  done
  echo "[global]"
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  [[ "$index" == http* ]] && echo "index-url = $index"
  ((${#extra[@]})) && echo "extra-index-url = ${extra[*]}"
  return 0
}

make_standin() {
  local root started
  command -v debootstrap >/dev/null \
    || { echo "debootstrap is not installed (Debian package 'debootstrap')" >&2; return 1; }
  started=$SECONDS
  root="$(mktemp -d)"
  echo "== stand-in base: debootstrap bookworm from $(debian_mirror)"
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$(debian_mirror)" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -rf "$root.log" "$root"; return 1; }
  rm -f "$root.log"
  # python:3.11-slim's Python is its own, so pip installs into it; Debian's marks itself
  # externally managed, which the image's `pip install` would refuse.
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  pip_conf >"$root/etc/pip.conf"
  # Debian's official images clean apt's caches after each install; python:3.11-slim has this.
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "stand-in for python:3.11-slim: Debian 12 with its Python 3.11" \
    --quiet - "$STANDIN" >/dev/null
  rm -rf "$root"
  echo "== stand-in base: $STANDIN made in $((SECONDS - started)) s"
}

choose_base() {
  if [[ -n "${PYTHON_IMAGE:-}" ]]; then echo "$PYTHON_IMAGE"; return; fi
  if podman image exists "$REAL_BASE" || timeout 300 podman pull -q "$REAL_BASE" >/dev/null 2>&1; then
    echo "$REAL_BASE"; return
  fi
  if [[ "${REBUILD_BASE:-}" == 1 ]] || ! podman image exists "$STANDIN"; then
    echo "== $REAL_BASE cannot be pulled here; making a stand-in" >&2
    make_standin >&2
  fi
  echo "$STANDIN"
}

choose_runtime() {
  if [[ -n "${PODMAN_RUNTIME:-}" ]]; then echo "$PODMAN_RUNTIME"; return; fi
  if podman run --rm --network=host "$1" true >/dev/null 2>&1; then echo runc; return; fi
  echo "$PWD/scripts/runc-without-limits"
}

BASE="$(choose_base)"
RUNTIME="$(choose_runtime "$BASE")"
echo "== base $BASE, runtime $RUNTIME, version $VERSION, revision $REVISION"

for target in "${TARGETS[@]}"; do
  name="$(image_name "$target")"
  started=$SECONDS
  # --format docker keeps HEALTHCHECK, which the OCI image format has no field for.
  log="$(mktemp)"
  podman build --runtime "$RUNTIME" --network=host --format docker \
    --target "$target" \
    --build-arg PYTHON_IMAGE="$BASE" \
    --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$REVISION" \
    --build-arg CREATED="$CREATED" \
    -t "$name:$VERSION" . >"$log" 2>&1 \
    || { tail -n 40 "$log" >&2; rm -f "$log"; echo "== $target: build failed" >&2; exit 1; }
  rm -f "$log"
  size="$(podman image inspect --format '{{.Size}}' "$name:$VERSION")"
  echo "== $target -> $name:$VERSION in $((SECONDS - started)) s, $((size / 1000000)) MB"
done
