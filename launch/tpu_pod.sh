#!/usr/bin/env bash
# Starts one experiment on every worker of a Cloud TPU VM pod, all with the same command; JAX's multi-controller
# runtime joins them (jax.distributed.initialize detects the pod) and the flat runs axis of the sweep is sharded over
# every TPU core of every worker.
#
#   launch/tpu_pod.sh my-v4-32 us-central2-b configs/permuted_mnist.py:sweep_lr /mnt/shared/pmnist_lr \
#       --config.num_seeds=30
#
# WORKDIR must be on a filesystem every worker sees (Filestore/NFS, or a GCS FUSE mount): process 0 writes the
# metrics and every worker writes its shards of the orbax checkpoints. After a preemption, run the same command
# again: every worker resumes from the latest complete checkpoint. DRY_RUN=1 prints the plan (runs per device,
# memory per device) from every worker without starting the run. The repository is expected at ~/plasticity_jax on
# every worker (REPO overrides), installed with `pip install -e .` and `pip install 'jax[tpu]'`.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG[:variants] WORKDIR [--config.field=value ...]" >&2
  exit 2
fi
tpu=$1 zone=$2 config=$3 workdir=$4
shift 4
extra=$(printf ' %q' "$@")
dry=${DRY_RUN:+--dry_run}
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ${REPO:-~/plasticity_jax} && python -m plasticity_jax.main --distributed --config=$config --workdir=$workdir $dry $extra"
