#!/usr/bin/env bash
# Builds the images the Docker-engine tests (tests/deploy/test_engine_*.py) run, on a machine
# that reaches no image registry: usage `build.sh [PROJECT_TAG]`.
#   1. a Debian bookworm base: a root filesystem made by debootstrap, loaded by `docker import`
#   2. stand-ins for the official base images, tagged with the names the project's files use
#      (read from Dockerfile and docker-compose.yml, so a bump there is followed here)
#   3. the project's image (PROJECT_TAG, default hpsearch-ci:test) from the unchanged
#      Dockerfile, with the classic builder, a CPU torch and a local wheelhouse
# Steps 1-2 are skipped when their tag exists (a real official image is never replaced); step 3
# always runs (Docker's layer cache makes an unchanged tree a few seconds). Each step prints
# its time. Called by .ci/run and by the tests' session fixture, so `make test` alone works.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
here="$repo/tests/deploy/images"
project_tag="${1:-hpsearch-ci:test}"
cache="${HPSEARCH_CI_CACHE:-/var/tmp/hpsearch-ci}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base=hpsearch-standin/debian:bookworm
python_image="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$repo/Dockerfile")"
postgres_image="$(sed -n 's/^ *image: *\(postgres:[^ ]*\) *$/\1/p' "$repo/docker-compose.yml")"
: "${python_image:?no ARG PYTHON_IMAGE= in Dockerfile}" "${postgres_image:?no postgres image in docker-compose.yml}"

# Steps may run side by side (each prints its own time).
have() { docker image inspect "$1" >/dev/null 2>&1; }
# Runs a command with its output kept back, shown (the end of it) only when it fails.
quiet() {
  local log rc=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || { grep -v "^WARNING: Location" "$log" | tail -40; rm -f "$log"; return "$rc"; }
  rm -f "$log"
}
timed() {
  local name="$1" started=$SECONDS
  shift
  echo "build.sh: $name ..."
  "$@"
  echo "build.sh: $name done in $((SECONDS - started)) s"
}
total_start=$SECONDS

# The wheelhouse: the project's dependencies at the pinned versions and the CPU torch, served on
# loopback to the build (WHEELS_URL); kept between runs, so a rebuild downloads nothing. It is
# downloaded again only when the pins or the dependencies change (a stamp of their hash), and
# while the base images are made (it needs only the host).
wheelhouse() {
  mkdir -p "$cache/wheels"
  quiet "${PYTHON:-python3}" -m pip download -d "$cache/wheels" -c "$repo/constraints.txt" \
    "torch==2.13.0" setuptools wheel "$repo"
  touch "$stamp"
}
stamp="$cache/wheels/.stamp-$(cat "$repo/constraints.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
wheels_job=""
if [ ! -e "$stamp" ]; then
  timed "wheelhouse $cache/wheels" wheelhouse &
  wheels_job=$!
fi

debian_base() {
  local rootfs
  rootfs="$(mktemp -d /var/tmp/hpsearch-rootfs.XXXXXX)"
  quiet debootstrap --variant=minbase bookworm "$rootfs" "$mirror" || { rm -rf "$rootfs"; return 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -c . | docker import - "$base" >/dev/null
  rm -rf "$rootfs"
}
have "$base" || timed "debootstrap bookworm -> $base" debian_base

# Each stand-in builds in a context of its own (tests/ is outside the project's .dockerignore'd
# context anyway), with the host's network: apt and pip reach the mirrors only from here. The
# two build side by side.
standin() {
  local tag="$1" dockerfile="$2" ctx rc=0
  ctx="$(mktemp -d)"
  cp "$here/$dockerfile" "$here"/*.sh "$ctx/"
  mkdir "$ctx/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  quiet env DOCKER_BUILDKIT=0 docker build --network host -f "$ctx/$dockerfile" -t "$tag" "$ctx" || rc=$?
  rm -rf "$ctx"
  return "$rc"
}
jobs_=()
for pair in "$python_image python.Dockerfile" "$postgres_image postgres.Dockerfile"; do
  set -- $pair
  have "$1" && continue
  timed "stand-in $1" standin "$1" "$2" &
  jobs_+=("$!")
done
for job in "${jobs_[@]}"; do wait "$job"; done
[ -z "$wheels_job" ] || wait "$wheels_job"

# A fixed port when it is free: WHEELS_URL is part of the build cache's key, and a new port
# each run would rebuild every layer below it.
port="${HPSEARCH_WHEELS_PORT:-38517}"
if ! python3 -c "import socket, sys; socket.socket().bind(('127.0.0.1', int(sys.argv[1])))" "$port" 2>/dev/null; then
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
python3 -m http.server --bind 127.0.0.1 --directory "$cache/wheels" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break; sleep 0.1; done

timed "project image $project_tag (classic builder)" quiet env DOCKER_BUILDKIT=0 docker build \
  --network host --build-arg WHEELS_URL="http://127.0.0.1:$port/" -t "$project_tag" "$repo"
echo "build.sh: images ready in $((SECONDS - total_start)) s"
