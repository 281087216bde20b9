#!/usr/bin/env bash
# Installs what the compose stack needs on Debian/Ubuntu (the Docker engine, docker-compose, and
# debootstrap to make a base image where no container registry is reachable), then starts the
# engine: the `docker` service where systemd runs, otherwise a background dockerd (engine.sh).
set -euo pipefail
here=$(dirname "$0")
bash "$here/engine.sh" save-host-network
bash "$here/../apt-install.sh" dockerd=docker.io docker-compose=docker-compose \
  debootstrap=debootstrap >/dev/null
bash "$here/engine.sh" start
