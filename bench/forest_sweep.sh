#!/usr/bin/env bash
# Interleaved repeats of bench.forest_fleet (3 nodes, c=32, 12 s) over batcher settings, against a
# snapshot of HEAD ($HEAD_TREE) and the same snapshot with the prototype batcher ($PROTO_TREE).
#   HEAD_TREE=/tmp/mf-head PROTO_TREE=/tmp/mf-proto bash bench/forest_sweep.sh [repeats] [seconds]
set -u
repeats=${1:-2}; seconds=${2:-12}
configs=(
  "mlserver|"
  "head|"
  "head|INFERRER_BATCH_MAX_IN_FLIGHT=1"
  "proto|"
  "proto|INFERRER_BATCH_MAX_IN_FLIGHT=1"
)
for r in $(seq "$repeats"); do
  for cfg in "${configs[@]}"; do
    tree=${cfg%%|*}; env=${cfg#*|}
    dir=$HEAD_TREE; [ "$tree" = proto ] && dir=$PROTO_TREE
    echo "## repeat $r, $tree, ${env:-defaults}"
    [ "$tree" = mlserver ] && { (cd "$HEAD_TREE" && PYTHONPATH="$HEAD_TREE" timeout 120 .venv/bin/python \
      -m bench.forest_fleet --mlserver --seconds "$seconds" 2>&1 | grep -E "^\| [0-9]|Error"); continue; }
    (cd "$dir" && PYTHONPATH="$dir" timeout 120 .venv/bin/python -m bench.forest_fleet --nodes 3 \
      --seconds "$seconds" ${env:+--env $env} 2>&1 | grep -E "^\| [0-9]|Error")
  done
done
