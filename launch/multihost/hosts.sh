#!/usr/bin/env bash
# Run one zoo launcher as one process per host over a plain list of machines (ssh).
#
#   launch/multihost/hosts.sh "host0 host1 host2 host3" /shared/zoo \
#       python -m launch.progan --config launch/configs/progan.py:paper --workdir /shared/runs/progan
#
# Every host needs the same checkout and venv at DIR (a shared filesystem is simplest) and
# must reach host0:PORT (the coordinator, process 0). The workdir must be on a filesystem
# every host sees. Set PORT (default 12355), VENV (default DIR/.venv) and
# ZOO_HEARTBEAT_TIMEOUT (seconds; how long the others wait for a host that died).
set -euo pipefail
HOSTS=($1); DIR=$2; shift 2
PORT=${PORT:-12355}
VENV=${VENV:-$DIR/.venv}
N=${#HOSTS[@]}
CMD=$(printf '%q ' "$@")
pids=()
for i in "${!HOSTS[@]}"; do
  ssh "${HOSTS[$i]}" "cd $DIR && . $VENV/bin/activate && \
    JAX_COORDINATOR_ADDRESS=${HOSTS[0]}:$PORT JAX_NUM_PROCESSES=$N JAX_PROCESS_ID=$i \
    ZOO_HEARTBEAT_TIMEOUT=${ZOO_HEARTBEAT_TIMEOUT:-100} $CMD" > >(sed "s/^/[${HOSTS[$i]}] /") 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
