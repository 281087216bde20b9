#!/usr/bin/env bash
# The test command: set up this machine, lint, and run the whole suite (real nginx, Prometheus,
# and a real Docker engine for the compose stack).
set -uo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh || exit 1
bash deploy/docker/setup-docker.sh || exit 1  # installs and starts the engine the compose tests use
# Test tools: wrk (the log-bound test's load), a PostgreSQL server (the job store's second database),
# Chromium (the fleet page in a real browser), amtool (the Alertmanager config check).
bash deploy/apt-install.sh wrk=wrk pg_ctlcluster=postgresql chromium=chromium amtool=prometheus-alertmanager \
  >/dev/null || exit 1
.venv/bin/ruff check . || exit 1
.venv/bin/ruff format --check . || exit 1
# mypy's cache outside the checkout: a fresh clone checks only what changed (it compares contents).
.venv/bin/mypy --cache-dir "${XDG_CACHE_HOME:-$HOME/.cache}/modelfleet/mypy" . || exit 1
.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest ran no test: failing" >&2
  exit 1
fi
exit "$status"
