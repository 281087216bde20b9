#!/usr/bin/env bash
# Installs what the compose stack needs on Debian/Ubuntu: the Docker engine, docker-compose, and
# debootstrap (to make a base image where no container registry is reachable).
set -euo pipefail
bash "$(dirname "$0")/../apt-install.sh" dockerd=docker.io docker-compose=docker-compose \
  debootstrap=debootstrap >/dev/null
