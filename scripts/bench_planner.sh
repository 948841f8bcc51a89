#!/usr/bin/env bash
# Runs bo_peers.py (with HEBO and SMAC3, scripts/bo_more_peers.py) once per function, every method
# of a function in the same run, then checks issue 15's targets.
#   scripts/bench_planner.sh PYTHON PEERS SEEDS METHODS OUT_DIR SPEC...
# SPEC is NAME:BUDGET[:NOISE_SD]; a function's dimension follows @ (rosenbrock@4:50).
set -euo pipefail
python=$1 peers=$2 seeds=$3 methods=$4 out=$5
shift 5
files=()
for spec in "$@"; do
  IFS=: read -r name budget noise <<< "$spec"
  file="$out/bench-planner-${spec//[:@]/-}.json"
  "$python" "$(dirname "$0")/bo_more_peers.py" --peers "$peers" --function "${name/@/:}" --budget "$budget" \
    --n-init 5 --seeds "$seeds" --noise-sd "${noise:-0}" --methods "$methods" --json "$file"
  files+=("$file")
done
python3 "$(dirname "$0")/planner_targets.py" "${files[@]}"
