#!/usr/bin/env bash
# Builds the fleet's five images: modelfleet-inferrer, -modelhost, -nginx, -prometheus, -broker.
#
#   deploy/docker/build-images.sh            no registry: a Debian base made with debootstrap and a
#                                            local wheelhouse; the image builds need no network
#   deploy/docker/build-images.sh registry   with a registry: official base images, PyPI
#
# The base rootfs and the wheelhouse are cached under $MODELFLEET_CACHE (default
# /var/cache/modelfleet), keyed by their inputs; without a cache everything is built from scratch.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-local}
cache=${MODELFLEET_CACHE:-/var/cache/modelfleet}
python=${PYTHON:-.venv/bin/python}
packages="python3,python3-venv,ca-certificates,curl,nginx,prometheus,prometheus-nginx-exporter,prometheus-alertmanager,redis-server"
suite=bookworm

build() {  # build NAME DOCKERFILE [TARGET] [--build-arg ...]
  local name=$1 dockerfile=$2 target=$3
  shift 3
  echo "building modelfleet-$name"
  DOCKER_BUILDKIT=0 docker build -q --force-rm -f "deploy/docker/$dockerfile" ${target:+--target "$target"} \
    -t "modelfleet-$name:latest" "$@" . >/dev/null
}

if [ "$mode" = registry ]; then
  build inferrer app.Dockerfile inferrer
  build modelhost app.Dockerfile modelhost
  build nginx nginx.Dockerfile ""
  build prometheus prometheus.Dockerfile ""
  build broker broker.Dockerfile ""
  exit 0
fi

mkdir -p "$cache"
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
base_key=$(printf '%s %s %s' "$suite" "$packages" "$mirror" | sha256sum | cut -c1-12)
base_image="modelfleet-base:$base_key"

if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  tarball="$cache/base-$base_key.tar"
  if [ ! -s "$tarball" ]; then
    echo "making the base rootfs with debootstrap ($suite: $packages)"
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  echo "importing $base_image"
  docker import "$tarball" "$base_image" >/dev/null
fi

requirements=$("$python" deploy/docker/requirements.py pyproject.toml)
wheel_key=$(printf '%s\n%s\n%s' "$requirements" "$(cat constraints.txt)" "$("$python" -VV)" | sha256sum | cut -c1-12)
wheels="$cache/wheelhouse-$wheel_key"
if [ ! -f "$wheels/.complete" ]; then
  echo "downloading wheels into $wheels"
  mkdir -p "$wheels"
  printf '%s\n' "$requirements" >"$wheels/requirements.txt"
  "$python" -m pip download -q --disable-pip-version-check -d "$wheels" -c constraints.txt -r "$wheels/requirements.txt"
  touch "$wheels/.complete"
fi
find deploy/docker/wheelhouse -name '*.whl' -delete
cp "$wheels"/*.whl deploy/docker/wheelhouse/

args=(--build-arg "BASE_IMAGE=$base_image")
build inferrer app.Dockerfile inferrer "${args[@]}" --build-arg PIP_ARGS=--no-index
build modelhost app.Dockerfile modelhost "${args[@]}" --build-arg PIP_ARGS=--no-index
build nginx nginx.Dockerfile "" "${args[@]}"
build prometheus prometheus.Dockerfile "" "${args[@]}"
build broker broker.Dockerfile "" "${args[@]}"
echo "images built from $base_image"
