#!/usr/bin/env bash
# GPU-only checks (QLoRA/8-bit on CUDA bitsandbytes, bf16, packing speed, FSDP, memory estimate vs
# torch's peak). Run from the repo root on a CUDA machine whose Python already has torch; the figures
# in the closing notes came from this script. Each step is bounded; a failing step does not stop the rest.
# Usage: [STEPS="a b"] bash ftkit/bench/gpu_checks.sh [OUTDIR]
set -u
OUT=${1:-${OUT:-/tmp/ftkit-gpu}}
source "$(dirname "$0")/gpu_steps.sh"
python3 -c "import torch, transformers, trl, peft, bitsandbytes as b; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bnb', b.__version__, 'bf16', torch.cuda.is_bf16_supported())"

GREP='bf16|train loss|eval loss|after:|saved'
step quickstart_bf16 120 python3 -m ftkit train recipes/quickstart.yml --output_dir=/tmp/qs --dataset_prepared_path=/tmp/prep
GREP='passed|failed|skipped|Error'
step adapters_cuda 240 python3 -m pytest -q -rs -p no:cacheprovider tests/test_adapters.py tests/test_merge_relora.py tests/test_gpu_quant.py
GREP='MiB|GiB|x0|model'
step quant_memory 90 python3 -m ftkit.bench.quant_memory
GREP='rows|efficiency|tokens/s|x padded|=='
step packing_alpaca 150 python3 -m ftkit bench packing recipes/quickstart.yml --sequence_len=512 --micro_batch_size=8 --hidden=1024 --layers=8 --steps=20 --dataset_prepared_path=/tmp/prep
step packing_chat 150 python3 -m ftkit bench packing recipes/quickstart.yml --datasets.0.path=data_samples/chat.jsonl --datasets.0.type=chat_template --sequence_len=512 --micro_batch_size=8 --hidden=1024 --layers=8 --steps=20 --dataset_prepared_path=/tmp/prep
GREP='passed|failed|skipped|Error'
step preference_cuda 150 python3 -m pytest -q -p no:cacheprovider tests/test_preference.py -k "learns or reload or full_finetune"
GREP='loss|runtime|rc=|Error|error'
step fsdp 120 python3 -m ftkit train recipes/quickstart.yml --fsdp='[full_shard, auto_wrap]' --fsdp_config.fsdp_transformer_layer_cls_to_wrap=LlamaDecoderLayer --fsdp_config.fsdp_state_dict_type=FULL_STATE_DICT --max_steps=40 --output_dir=/tmp/fsdp --dataset_prepared_path=/tmp/prep
GREP='peak|weights|gradients|optimizer|activations|GB'
step memory_gpu 150 bash -c "python3 -c \"from pathlib import Path;import yaml;from ftkit.bench.memory import bench_recipes;r=bench_recipes(Path('/tmp/mb'))['full'];Path('/tmp/mb/full.yml').write_text(yaml.safe_dump(r.dump()))\" && python3 -m ftkit memory /tmp/mb/full.yml --bf16=true && python3 -m ftkit train /tmp/mb/full.yml --bf16=true --output_dir=/tmp/mb/out > /dev/null 2>&1 && python3 -c \"import json;print('measured peak', json.load(open('/tmp/mb/out/metrics.json'))['runtime']['peak_device_memory_bytes']/1e9,'GB')\""
