#!/usr/bin/env bash
# The Docker engine the compose stack runs on, on the default socket (/var/run/docker.sock).
#
#   deploy/docker/engine.sh start   start it (a no-op when an engine already answers)
#   deploy/docker/engine.sh stop    stop it, and remove what it leaves behind on the host
#   deploy/docker/engine.sh status  say whether it answers
#   deploy/docker/engine.sh save-host-network
#                                   note the host's forwarding settings for `stop` to put back
#                                   (setup-docker.sh does it before installing the engine)
#
# Where systemd runs, the engine is the distribution's `docker` service. Elsewhere (containers,
# minimal machines) this script runs dockerd in the background itself:
#   /run/modelfleet/dockerd.pid        its PID
#   /var/log/modelfleet/dockerd.log    its log
#   /run/modelfleet/host-network.state the host's forwarding settings before the engine started
# dockerd changes the host's network and does not undo it when it stops: the docker0 and
# docker_gwbridge bridges, its iptables chains, a FORWARD policy of DROP and ip_forward=1. `stop`
# removes the bridges and chains and puts the saved settings back, so plain Linux bridges work again.
set -euo pipefail

RUN_DIR=/run/modelfleet
PID_FILE=$RUN_DIR/dockerd.pid
LOG_FILE=/var/log/modelfleet/dockerd.log
STATE_FILE=$RUN_DIR/host-network.state
SOCKET=unix:///var/run/docker.sock
BRIDGE_NF=/proc/sys/net/bridge/bridge-nf-call-iptables

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

answers() { DOCKER_HOST=$SOCKET docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
with_systemd() { command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }
our_pid() {  # the PID in our PID file, if that process is still a dockerd
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

save_host_network() {  # once, before an engine has touched the host (too late when one answers)
  if [ -s "$STATE_FILE" ] || answers; then return 0; fi
  $sudo mkdir -p "$RUN_DIR"
  local policy bridge_nf=""
  policy=$($sudo iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')
  [ -r "$BRIDGE_NF" ] && bridge_nf=$(cat "$BRIDGE_NF")
  printf 'forward_policy=%s\nip_forward=%s\nbridge_nf_call_iptables=%s\n' \
    "${policy:-ACCEPT}" "$(cat /proc/sys/net/ipv4/ip_forward)" "$bridge_nf" | $sudo tee "$STATE_FILE.tmp" >/dev/null
  $sudo mv "$STATE_FILE.tmp" "$STATE_FILE"
}

start() {
  if answers; then
    echo "docker engine: already running"
    return 0
  fi
  save_host_network
  if with_systemd; then
    $sudo systemctl enable --now docker >/dev/null
  else
    $sudo mkdir -p "$RUN_DIR" "$(dirname "$LOG_FILE")"
    # setsid: the engine outlives this shell and is not stopped by its terminal's signals.
    $sudo setsid dockerd --host "$SOCKET" --pidfile "$PID_FILE" >>"$LOG_FILE" 2>&1 </dev/null &
  fi
  for _ in $(seq 120); do
    answers && { echo "docker engine: running (log: $LOG_FILE)"; return 0; }
    sleep 0.5
  done
  echo "docker engine: did not answer within 60 s; see $LOG_FILE" >&2
  tail -20 "$LOG_FILE" >&2 2>/dev/null || true
  return 1
}

stop() {
  # The engine's own bridges, asked before it stops (compose networks that were not taken down).
  local bridges="docker0 docker_gwbridge" id pid
  if answers; then
    for id in $(DOCKER_HOST=$SOCKET docker network ls -q --filter driver=bridge 2>/dev/null); do
      bridges="$bridges br-${id:0:12}"
    done
  fi
  if with_systemd; then
    $sudo systemctl stop docker.socket docker.service >/dev/null 2>&1 || true
  elif pid=$(our_pid); then
    $sudo kill -TERM "$pid"
    for _ in $(seq 120); do
      [ -d "/proc/$pid" ] || break
      sleep 0.5
    done
    [ -d "/proc/$pid" ] && $sudo kill -KILL "$pid"
    $sudo rm -f "$PID_FILE"
  elif answers; then
    echo "docker engine: one answers that this script did not start; leaving it alone" >&2
    return 1
  fi
  clean_host_network $bridges
  echo "docker engine: stopped"
}

clean_host_network() {  # clean_host_network BRIDGE...
  local bridge table rule chain
  for bridge in "$@"; do
    ip link show "$bridge" >/dev/null 2>&1 && $sudo ip link delete "$bridge"
  done
  command -v iptables >/dev/null 2>&1 || return 0
  for table in filter nat; do
    # Rules in the built-in chains that jump to the engine's chains or name its bridges...
    $sudo iptables -t "$table" -S | grep -E '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ' \
      | { grep -E -- '-j DOCKER|docker0|docker_gwbridge|br-[0-9a-f]{12}' || true; } | while read -r rule; do
        # shellcheck disable=SC2086  # the rule is iptables -S output: split into words on purpose
        $sudo iptables -t "$table" -D ${rule#-A }
      done
    # ...then the engine's own chains.
    for chain in $($sudo iptables -t "$table" -S | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
      $sudo iptables -t "$table" -F "$chain"
    done
    for chain in $($sudo iptables -t "$table" -S | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
      $sudo iptables -t "$table" -X "$chain"
    done
  done
  if [ -s "$STATE_FILE" ]; then
    local forward_policy ip_forward bridge_nf_call_iptables
    # shellcheck disable=SC1090
    . "$STATE_FILE"
    $sudo iptables -P FORWARD "$forward_policy"
    echo "$ip_forward" | $sudo tee /proc/sys/net/ipv4/ip_forward >/dev/null
    if [ -n "$bridge_nf_call_iptables" ] && [ -w "$BRIDGE_NF" ]; then
      echo "$bridge_nf_call_iptables" | $sudo tee "$BRIDGE_NF" >/dev/null
    fi
    $sudo rm -f "$STATE_FILE"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  save-host-network) save_host_network ;;
  status) if answers; then echo "docker engine: running"; else echo "docker engine: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status|save-host-network" >&2; exit 2 ;;
esac
