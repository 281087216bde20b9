#!/bin/sh
# nginx in front of nodes that an orchestrator starts and stops (Docker Swarm's `tasks.<service>`,
# a Kubernetes headless Service). Open-source nginx resolves an upstream's names once, at start; this
# resolves NAME again every DNS_INTERVAL_S (1 s), and when its addresses change it rewrites the
# upstream's server list and reloads nginx gracefully (old workers finish their requests).
#
#   modelfleet-nginx-dns NAME PORT CONFIG SERVERS_FILE
#
# CONFIG includes SERVERS_FILE inside its upstream block. A name that stops resolving three times in
# a row (every task gone) leaves one server marked down: nginx answers 502 until a node is back.
set -eu
name=$1 port=$2 config=$3 servers_file=$4
interval=${DNS_INTERVAL_S:-1}

servers() {
  getent ahosts "$name" 2>/dev/null | awk '{print $1}' | sort -u | awk -v port="$port" '
    { address = ($1 ~ /:/) ? "[" $1 "]" : $1
      printf "server %s:%s max_fails=1 fail_timeout=2s;\n", address, port }'
}

write() {
  list=$1
  [ -n "$list" ] || list="server 127.0.0.1:9 down;  # no node resolves"
  mkdir -p "$(dirname "$servers_file")"
  printf '%s\n' "$list" >"$servers_file.tmp"
  mv "$servers_file.tmp" "$servers_file"
}

current=$(servers)
write "$current"
nginx -e stderr -c "$config" &
pid=$!
trap 'kill -QUIT "$pid" 2>/dev/null || true; wait "$pid" || true; exit 0' QUIT TERM INT
misses=0
while kill -0 "$pid" 2>/dev/null; do
  sleep "$interval" &
  wait $! || true
  found=$(servers)
  if [ -z "$found" ] && [ -n "$current" ]; then
    misses=$((misses + 1))
    [ "$misses" -ge 3 ] || continue
  fi
  misses=0
  if [ "$found" != "$current" ]; then
    current=$found
    write "$current"
    kill -HUP "$pid"
    echo "modelfleet-nginx-dns: $name resolves to $(printf '%s' "$current" | grep -c '^server') address(es); nginx reloaded" >&2
  fi
done
wait "$pid"
