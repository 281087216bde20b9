#!/bin/sh
# nginx in front of nodes that an orchestrator starts and stops (Docker Swarm's `tasks.<service>`,
# a Kubernetes headless Service). Open-source nginx resolves an upstream's names once, at start; this
# resolves NAME again every DNS_INTERVAL_S (1 s), and when its addresses change it rewrites the
# upstream's server list and reloads nginx gracefully (old workers finish their requests).
#
#   modelfleet-nginx-dns NAME PORT CONFIG SERVERS_FILE
#
# CONFIG includes SERVERS_FILE inside its upstream block. IPv4 addresses only: the nodes listen on
# 0.0.0.0. A name that stops resolving (every task gone, or the resolver briefly down) keeps the last
# list: nginx marks what does not answer as failed and retries elsewhere, as it does for any node.
set -eu
pid=""
trap '[ -z "$pid" ] || kill -QUIT "$pid" 2>/dev/null || true; [ -z "$pid" ] || wait "$pid" || true; exit 0' QUIT TERM INT
name=$1 port=$2 config=$3 servers_file=$4
interval=${DNS_INTERVAL_S:-1}

servers() {
  getent ahostsv4 "$name" 2>/dev/null | awk '{print $1}' | sort -u |
    awk -v port="$port" '{ printf "server %s:%s max_fails=1 fail_timeout=2s;\n", $1, port }'
}

write() {
  list=$1
  [ -n "$list" ] || list="server 127.0.0.1:9 down;  # no node has resolved yet"
  mkdir -p "$(dirname "$servers_file")"
  printf '%s\n' "$list" >"$servers_file.tmp"
  mv "$servers_file.tmp" "$servers_file"
}

current=$(servers)
write "$current"
nginx -e stderr -c "$config" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep "$interval" &
  wait $! || true
  found=$(servers)
  if [ -n "$found" ] && [ "$found" != "$current" ]; then
    current=$found
    write "$current"
    kill -HUP "$pid"
    echo "modelfleet-nginx-dns: $name resolves to $(printf '%s' "$current" | grep -c '^server') address(es); nginx reloaded" >&2
  fi
done
wait "$pid"
