#!/usr/bin/env bash
# One zoo launcher on a Cloud TPU pod slice: the same command on every worker; JAX finds
# the slice's coordinator and process ids itself (ZOO_DISTRIBUTED_AUTO=1).
#
#   launch/multihost/tpu_pod.sh my-tpu us-central2-b \
#       python -m launch.stylegan --config launch/configs/stylegan.py:paper --workdir /mnt/runs/sg
#
# Each worker needs the checkout at ~/zoo with `pip install -e '.[tpu]'` done (run this
# script with "bash -c 'cd ~/zoo && pip install -e .[tpu]'" as the command once). The
# workdir must be a path every worker sees (a Filestore/NFS mount, or a bucket mounted with
# gcsfuse): checkpoints are written once, by orbax's multi-host protocol.
set -euo pipefail
TPU=$1; ZONE=$2; shift 2
CMD=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command \
  "cd ~/zoo && . .venv/bin/activate && ZOO_DISTRIBUTED_AUTO=1 $CMD"
