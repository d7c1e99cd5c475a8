#!/usr/bin/env bash
# What a GPU user feels (issue 24), measured on a CUDA machine: the LM head's loss (TRL's chunked head, the
# full logits, Cut Cross-Entropy), Liger's kernels, and packed rows padding-free (varlen) vs masked vs padded.
# Run from the repo root in a Python that has ftkit's stack with CUDA torch; for the kernel rows also
# `pip install -e ".[gpu]"` (liger-kernel, cut-cross-entropy) and flash-attn (built for the machine's CUDA).
# Offline: every model is a random-init twin built here. Each step is bounded; a failing step does not stop
# the rest. Usage: [STEPS="kernels varlen"] bash ftkit/bench/gpu_speed.sh [OUTDIR]
set -u
OUT=${1:-${OUT:-/tmp/ftkit-gpu-speed}}
source "$(dirname "$0")/gpu_steps.sh"
python3 - <<'EOF'
import importlib.util as u, torch, transformers, trl
from transformers.utils import import_utils as iu
print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__,
      "bf16", torch.cuda.is_bf16_supported())
print("installed:", {m: u.find_spec(m) is not None for m in ("liger_kernel", "cut_cross_entropy", "flash_attn")},
      "flash_attention_2", iu.is_flash_attn_2_available(), "flash_attention_3", iu.is_flash_attn_3_available())
EOF

# LM head and Liger: CUDA peak (torch.cuda.max_memory_allocated) and s/step, 1B-shaped twin, 8 x 2048 tokens
GREP='==|CUDA peak|needs|Error|error'
step kernels 900 python3 -m ftkit bench memory --sections kernels --steps 8
# packed rows: tokens/s packed varlen (flash-attn, cu_seqlens) vs packed masked (sdpa block-diagonal) vs padded
GREP='==|real tokens/s|varlen|efficiency'
step varlen_alpaca 600 python3 -m ftkit bench packing recipes/quickstart.yml --sequence_len=2048 --micro_batch_size=8 --hidden=1024 --layers=8 --steps=20 --dataset_prepared_path=/tmp/prep
step varlen_chat 600 python3 -m ftkit bench packing recipes/quickstart.yml --datasets.0.path=data_samples/chat.jsonl --datasets.0.type=chat_template --sequence_len=2048 --micro_batch_size=8 --hidden=1024 --layers=8 --steps=20 --dataset_prepared_path=/tmp/prep
# a packed training run takes varlen by default and says so
GREP='packed rows|LM head|Liger|cut_cross|train loss|Error'
step packed_train 300 python3 -m ftkit train recipes/quickstart.yml --sample_packing=true --max_steps=30 --output_dir=/tmp/packed --dataset_prepared_path=/tmp/prep --liger_rms_norm=true --liger_glu_activation=true --cut_cross_entropy=true
# the chunked loss's equality tests, run on CUDA (TRL's Triton kernel and CCE are only reachable here)
GREP='passed|failed|skipped|Error'
step chunked_loss_tests 600 python3 -m pytest -q -p no:cacheprovider tests/test_chunked_loss.py tests/test_kernels.py
