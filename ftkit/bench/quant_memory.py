"""Weight memory of a base in fp32 / bf16 vs loaded 8-bit and 4-bit (nf4, double quant), side by side.

    python -m ftkit.bench.quant_memory           # the tiny twin + a 0.2B random-init Llama

Prints bytes from transformers' get_memory_footprint and the ratio to fp32. The random-init Llama is
built from a config (no download) with Llama-like proportions, so embeddings stop dominating.
"""
from __future__ import annotations

import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

from ftkit.models.tiny import tiny_path

LOADS = {
    "fp32": dict(dtype=torch.float32),
    "bf16": dict(dtype=torch.bfloat16),
    "8-bit": dict(dtype=torch.float32, quantization_config=BitsAndBytesConfig(load_in_8bit=True)),
    "4-bit nf4 dq": dict(dtype=torch.float32, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32)),
}


def report(name: str, path) -> None:
    sizes = {}
    for label, kwargs in LOADS.items():
        t0 = time.time()
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        sizes[label] = model.get_memory_footprint()
        print(f"{name:24s} {label:13s} {sizes[label] / 2**20:9.2f} MiB  x{sizes[label] / sizes['fp32']:.3f} of fp32"
              f"  (load {time.time() - t0:.1f}s)", flush=True)
        del model


def bigger_twin(out: str) -> str:
    """~0.2B-parameter Llama (hidden 1024, 12 layers, vocab 32k), random init, saved to `out`."""
    config = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
                         num_key_value_heads=4, vocab_size=32000, tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


if __name__ == "__main__":
    report("tiny:llama (137k+embed)", tiny_path("tiny:llama"))
    if "--tiny-only" not in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            report("random Llama 0.2B", bigger_twin(tmp))
