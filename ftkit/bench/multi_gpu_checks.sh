#!/usr/bin/env bash
# Several-GPU checks (issue 23): one process vs N processes under DDP, ZeRO-2, ZeRO-3, FSDP full_shard and
# hybrid_shard (FSDP1: the hybrid strategies need version 1; on one node it shards within the node) on the ~58M
# Llama twin (fp32, constant learning rate, the same global batch: one process accumulates N micro-batches).
# Prints per engine: the largest per-step loss difference from the one-process run, tokens/s, rank 0's peak
# allocated memory against `ftkit memory --num_processes N`, and every GPU's peak memory.used (nvidia-smi).
# Run from the repo root on a machine with N >= 2 GPUs whose Python has the stack; each run is bounded and a
# failing run does not stop the others. Without nvidia-smi it runs on the CPU (N=2, gloo, FSDP is then DDP).
# Usage: [N=4] [MAX_STEPS=10] [ENGINES="ddp zero3"] bash ftkit/bench/multi_gpu_checks.sh [OUTDIR]
set -u
OUT=${1:-${OUT:-/tmp/ftkit-multi-gpu}}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled FTKIT_CACHE=${FTKIT_CACHE:-/tmp/ftkit-cache}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
N=${N:-$(( GPUS >= 2 ? GPUS : 2 ))}
ENGINES=${ENGINES:-ddp zero2 zero3 fsdp fsdp_hybrid}
declare -A ENGINE_ARGS=(
    [ddp]=""
    [zero2]="--deepspeed=recipes/deepspeed/zero2.json"
    [zero3]="--deepspeed=recipes/deepspeed/zero3.json"
    [fsdp]="--fsdp=[full_shard,auto_wrap] --fsdp_config.fsdp_transformer_layer_cls_to_wrap=LlamaDecoderLayer"
    [fsdp_hybrid]="--fsdp=[hybrid_shard,auto_wrap] --fsdp_config.fsdp_version=1 --fsdp_config.fsdp_transformer_layer_cls_to_wrap=LlamaDecoderLayer"
)
[ "$GPUS" -gt 0 ] && nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, accelerate, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'deepspeed', deepspeed.__version__, 'cuda devices', torch.cuda.device_count())"
echo "processes: $N; engines: $ENGINES"

# the recipe: `ftkit bench memory`'s full fine-tune of the ~58M twin, written once
python3 -c "
from pathlib import Path; import yaml; from ftkit.bench.memory import bench_recipes
r = bench_recipes(Path('$OUT/work'))['full']
Path('$OUT/full.yml').write_text(yaml.safe_dump(r.dump()))" || { echo "could not build the twin recipe"; exit 1; }
COMMON=(--max_steps="${MAX_STEPS:-10}" --logging_steps=1 --lr_scheduler=constant --warmup_steps=0 --bf16=false
        --save_strategy=no --seed=42)

train() {  # train NAME ARGS...: a bounded run, nvidia-smi sampling every GPU's memory.used meanwhile
    local name=$1 t0 rc sampler=""
    shift
    t0=$(date +%s)
    if [ "$GPUS" -gt 0 ]; then
        nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/$name.smi" &
        sampler=$!
    fi
    timeout 600 python3 -m ftkit train "$OUT/full.yml" "${COMMON[@]}" --output_dir="$OUT/$name" --overwrite "$@" \
        > "$OUT/$name.log" 2>&1
    rc=$?
    [ -n "$sampler" ] && kill "$sampler"
    echo "=== $name: rc=$rc in $(( $(date +%s) - t0 ))s"
    [ "$rc" -eq 0 ] || grep -E "ftkit: error|Error" "$OUT/$name.log" | tail -n 5
}

train single --gradient_accumulation_steps="$N"
for engine in $ENGINES; do
    # shellcheck disable=SC2086  # the engine's arguments are words
    train "$engine" --num_processes "$N" ${ENGINE_ARGS[$engine]}
    # shellcheck disable=SC2086
    python3 -m ftkit memory "$OUT/full.yml" --num_processes "$N" --bf16=false ${ENGINE_ARGS[$engine]} \
        > "$OUT/$engine.memory" 2>&1
done

python3 - "$OUT" "$N" $ENGINES <<'PY'
import json, re, sys
from pathlib import Path
out, n, engines = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
def metrics(name):
    f = out / name / "metrics.json"
    return json.loads(f.read_text()) if f.is_file() else None
def gb(b):
    return f"{b / 1e9:.3f}" if b else "-"
single = metrics("single")
base = [l for _, l in single["losses"]] if single else []
print(f"\n{'engine':8} {'steps':>5} {'max |loss - 1 process|':>23} {'tokens/s':>9} {'rank-0 peak GB':>15} "
      f"{'estimate GB':>12} {'nvidia-smi peak MiB per GPU'}")
for name in ["single", *engines]:
    m = metrics(name)
    if m is None:
        print(f"{name:8} failed: see {out / (name + '.log')}")
        continue
    losses = [l for _, l in m["losses"]]
    diff = max((abs(a - b) for a, b in zip(losses, base)), default=float("nan")) if name != "single" else 0.0
    est = re.search(r"^\s*peak\s+([\d.]+) GB", (out / f"{name}.memory").read_text(), re.M) \
        if (out / f"{name}.memory").is_file() else None
    smi = {}
    if (out / f"{name}.smi").is_file():
        for line in (out / f"{name}.smi").read_text().splitlines():
            if "," in line:
                i, used = (x.strip() for x in line.split(",")[:2])
                if used.isdigit():
                    smi[i] = max(smi.get(i, 0), int(used))
    print(f"{name:8} {len(losses):5d} {diff:23.2e} {m['tokens_seen'] / max(m['seconds'], 1e-9):9.0f} "
          f"{gb(m['runtime']['peak_device_memory_bytes']):>15} {est.group(1) if est else '-':>12} "
          f"{' '.join(f'{k}:{v}' for k, v in sorted(smi.items())) or '-'}")
print(f"\nexpected: every engine steps {len(base)} times; DDP and ZeRO-2 within ~1e-5 of one process (fp32; the "
      f"reduction order differs), ZeRO-3 and FSDP within ~1e-4; the estimate (allocated bytes, {n} devices) near "
      "rank 0's peak; nvidia-smi adds the CUDA context and the allocator's cache (~0.5 GB per GPU)")
PY
