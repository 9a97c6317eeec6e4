#!/usr/bin/env bash
# Runs one experiment on this machine and keeps it going: if the process dies (out of memory, a preempted
# node, a killed session), the same command is started again and resumes from the latest checkpoint.
#
#   launch/local.sh configs/permuted_mnist.py:lr0.01 runs/pmnist_lr0.01 --config.num_seeds=8
#
# Environment: MAX_RESTARTS (default 5).
set -uo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG[:variants] WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
for ((attempt = 0; attempt <= ${MAX_RESTARTS:-5}; attempt++)); do
  python -m plasticity_jax.main --config="$config" --workdir="$workdir" "$@" && exit 0
  status=$?
  [[ $status -eq 1 ]] && exit $status  # A config or data error: restarting would not help.
  echo "run exited with status $status; restarting from the latest checkpoint ($((attempt + 1)))" >&2
done
exit 1
