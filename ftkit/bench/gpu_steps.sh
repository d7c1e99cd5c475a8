# Sourced by gpu_checks.sh and gpu_speed.sh: the offline environment and `step NAME LIMIT CMD...`, which runs
# CMD bounded by LIMIT seconds into $OUT/NAME.log and prints its lines matching $GREP; STEPS="a b" runs only
# those steps (default: all). A failing step does not stop the rest.
OUT=${OUT:-/tmp/ftkit-gpu}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled FTKIT_CACHE=${FTKIT_CACHE:-/tmp/ftkit-cache}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
step() { local name=$1 limit=$2; shift 2
  [[ " ${STEPS:-all} " == *" all "* || " ${STEPS:-} " == *" $name "* ]] || return 0
  echo "=== $name"; local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "    rc=$rc in $(( $(date +%s) - t0 ))s"; grep -E "$GREP" "$OUT/$name.log" | tail -n 30; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
