#!/usr/bin/env bash
# apt-install.sh COMMAND=PACKAGE ...: installs each PACKAGE whose COMMAND is missing (Debian/Ubuntu),
# with sudo when not root. Prints the packages it installed, one per line, on stdout.
set -euo pipefail
missing=()
for pair in "$@"; do
  command=${pair%%=*}
  package=${pair#*=}
  command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || missing+=("$package")
done
[ ${#missing[@]} -gt 0 ] || exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
printf '%s\n' "${missing[@]}"
