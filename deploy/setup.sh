#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for modelfleet: nginx, Prometheus and its nginx exporter
# from the distribution, and the Python environment in .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=python3-venv
python3 -c 'import ensurepip, venv' 2>/dev/null && venv=""
installed=$(bash deploy/apt-install.sh nginx=nginx prometheus=prometheus \
  prometheus-nginx-exporter=prometheus-nginx-exporter redis-server=redis-server curl=curl \
  ${venv:+no-such-command=$venv})
# Debian starts system-wide services for what it installs; modelfleet runs its own copies on the
# ports of deploy/.env, so stop the ones this script just installed.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for service in prometheus prometheus-nginx-exporter redis-server; do
    if grep -qx "$service" <<<"$installed"; then
      sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# pip byte-compiles what it installs: where PYTHONDONTWRITEBYTECODE is set (these machines), nothing
# else would, and every process would compile scikit-learn and SciPy again at each import.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
echo "setup done: .venv is ready"
