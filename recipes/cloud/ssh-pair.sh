#!/bin/bash
# ftkit on two machines reached by SSH (no scheduler): the same command on both, machine 0 first.
# Usage: bash recipes/cloud/ssh-pair.sh HOST0 HOST1 RECIPE.yml [--key=value ...]
# Both hosts need ftkit at the same path (FTKIT_DIR, default: this checkout's path), the recipe and its data;
# HOST1 must reach HOST0 at ADDR (default: HOST0 without its user@) on PORT (default 29500). GPUS is the GPUs
# per machine (default 8).
set -euo pipefail
HOST0=${1:?usage: ssh-pair.sh HOST0 HOST1 RECIPE.yml [--key=value ...]}
HOST1=${2:?usage: ssh-pair.sh HOST0 HOST1 RECIPE.yml [--key=value ...]}
RECIPE=${3:?usage: ssh-pair.sh HOST0 HOST1 RECIPE.yml [--key=value ...]}
shift 3
DIR=${FTKIT_DIR:-$PWD}
ADDR=${ADDR:-${HOST0#*@}}
PORT=${PORT:-29500}
GPUS=${GPUS:-8}
train_command() {  # machine $1's command, quoted for the remote shell; then the overrides
    local rank=$1
    shift
    printf 'cd %q && exec ftkit train %q --num_machines 2 --machine_rank %d --main_process_ip %q' \
        "$DIR" "$RECIPE" "$rank" "$ADDR"
    printf ' --main_process_port %d --num_processes %d' "$PORT" "$((2 * GPUS))"
    [ $# -eq 0 ] || printf ' %q' "$@"
}
ssh "$HOST0" "$(train_command 0 "$@")" &
machine0=$!
ssh "$HOST1" "$(train_command 1 "$@")" &
machine1=$!
rc=0
wait "$machine0" || rc=$?
wait "$machine1" || rc=$?
exit "$rc"
