#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for modelfleet: nginx, Prometheus and its nginx exporter
# from the distribution, and the Python environment in .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have nginx || missing+=(nginx)
have prometheus || missing+=(prometheus)
have prometheus-nginx-exporter || missing+=(prometheus-nginx-exporter)
have curl || missing+=(curl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts system-wide services for what it installs; modelfleet runs its own copies on
  # the ports of deploy/.env, so stop the ones this script just installed.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for service in prometheus prometheus-nginx-exporter; do
      if [[ " ${missing[*]} " == *" $service "* ]]; then
        $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup done: .venv is ready"
