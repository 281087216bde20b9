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
# Where systemd runs, the engine is the distribution's `docker` service (and its containerd).
# Elsewhere (containers, minimal machines) this script runs dockerd in the background itself:
#   /run/modelfleet/dockerd.pid                 its PID
#   /var/log/modelfleet/dockerd.log             its log
#   /var/lib/modelfleet/host-network.state      the host's forwarding settings before the engine
# dockerd changes the host's network and does not undo it when it stops: the docker0 and
# docker_gwbridge bridges, its iptables chains, a FORWARD policy of DROP and ip_forward=1. `stop`
# removes the bridges and chains and puts the saved FORWARD policy and ip_forward back (and
# bridge-nf-call-iptables, when its module was loaded before the engine), so plain Linux bridges
# forward again. It needs root: run as another user, it runs itself again with sudo.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exec sudo bash "$0" "$@"

PID_FILE=/run/modelfleet/dockerd.pid
LOG_FILE=/var/log/modelfleet/dockerd.log
STATE_FILE=/var/lib/modelfleet/host-network.state
SOCKET=unix:///var/run/docker.sock
BRIDGE_NF=/proc/sys/net/bridge/bridge-nf-call-iptables
BUILT_IN_CHAINS='^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) '
ENGINE_RULES='-j DOCKER|docker0|docker_gwbridge|br-[0-9a-f]{12}'

answers() { DOCKER_HOST=$SOCKET docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
with_systemd() { command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }
has_iptables() { command -v iptables >/dev/null 2>&1; }
our_pid() {  # the PID in our PID file, if that process is still a dockerd
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

save_host_network() {  # once, before an engine has touched the host (too late when one answers)
  if [ -s "$STATE_FILE" ] || answers; then return 0; fi
  mkdir -p "$(dirname "$STATE_FILE")"
  local policy=ACCEPT bridge_nf=""  # no iptables yet: the kernel's default policy
  if has_iptables; then
    policy=$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')
  fi
  [ -r "$BRIDGE_NF" ] && bridge_nf=$(cat "$BRIDGE_NF")
  printf 'forward_policy=%s\nip_forward=%s\nbridge_nf_call_iptables=%s\n' \
    "${policy:-ACCEPT}" "$(cat /proc/sys/net/ipv4/ip_forward)" "$bridge_nf" >"$STATE_FILE.tmp"
  mv "$STATE_FILE.tmp" "$STATE_FILE"
}

start() {
  if answers; then
    echo "docker engine: already running"
    return 0
  fi
  save_host_network
  local daemon=""
  if with_systemd; then
    systemctl enable --now docker >/dev/null
  else
    mkdir -p "$(dirname "$PID_FILE")" "$(dirname "$LOG_FILE")"
    our_pid >/dev/null || rm -f "$PID_FILE"  # a stale one makes dockerd refuse to start
    # setsid: the engine outlives this shell and is not stopped by its terminal's signals.
    setsid dockerd --host "$SOCKET" --pidfile "$PID_FILE" >>"$LOG_FILE" 2>&1 </dev/null &
    daemon=$!
  fi
  for _ in $(seq 120); do
    answers && { echo "docker engine: running (log: $LOG_FILE)"; return 0; }
    if [ -n "$daemon" ] && ! kill -0 "$daemon" 2>/dev/null; then
      break  # dockerd exited: its log says why
    fi
    sleep 0.5
  done
  echo "docker engine: did not start; last lines of $LOG_FILE:" >&2
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
    systemctl stop docker.socket docker.service containerd.service >/dev/null 2>&1 || true
  elif pid=$(our_pid); then
    kill -TERM "$pid"
    for _ in $(seq 120); do
      [ -d "/proc/$pid" ] || break
      sleep 0.5
    done
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$PID_FILE"
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
    if ip link show "$bridge" >/dev/null 2>&1; then ip link delete "$bridge"; fi
  done
  if has_iptables; then
    for table in filter nat; do
      # Rules in the built-in chains that jump to the engine's chains or name its bridges...
      iptables -t "$table" -S | awk -v chains="$BUILT_IN_CHAINS" -v rules="$ENGINE_RULES" \
        '$0 ~ chains && $0 ~ rules' | while read -r rule; do
          # shellcheck disable=SC2086  # the rule is iptables -S output: split into words on purpose
          iptables -t "$table" -D ${rule#-A }
        done
      # ...then the engine's own chains.
      for chain in $(iptables -t "$table" -S | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
        iptables -t "$table" -F "$chain"
      done
      for chain in $(iptables -t "$table" -S | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
        iptables -t "$table" -X "$chain"
      done
    done
  fi
  if [ -s "$STATE_FILE" ]; then
    local forward_policy ip_forward bridge_nf_call_iptables
    # shellcheck disable=SC1090
    . "$STATE_FILE"
    if has_iptables; then iptables -P FORWARD "$forward_policy"; fi
    echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
    if [ -n "$bridge_nf_call_iptables" ] && [ -w "$BRIDGE_NF" ]; then
      echo "$bridge_nf_call_iptables" >"$BRIDGE_NF"
    fi
    rm -f "$STATE_FILE"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  save-host-network) save_host_network ;;
  status) if answers; then echo "docker engine: running"; else echo "docker engine: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status|save-host-network" >&2; exit 2 ;;
esac
