"""On a CUDA machine: peft's own LoftQ (CUDA-only) gives the same initialisation as ftkit's CPU LoftQ.

Everything else about quantized training is covered by test_adapters.py / test_merge_relora.py, which
run on CUDA unchanged when one is present (bitsandbytes' CUDA kernels, bf16 compute, device_map).
"""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="peft's LoftQ path needs a CUDA device")]


def test_peft_cuda_loftq_matches_ftkit_cpu_loftq():
    from peft import LoftQConfig, LoraConfig, get_peft_model

    from ftkit.models.adapters import loftq_cpu

    torch.manual_seed(0)
    weight = torch.randn(128, 256)

    def wrapped():
        lin = torch.nn.Sequential(torch.nn.Linear(256, 128, bias=False))
        lin[0].weight.data = weight.clone()
        return lin

    cpu = get_peft_model(wrapped(), LoraConfig(r=8, lora_alpha=8, target_modules=["0"]))
    loftq_cpu(cpu, {"loftq_bits": 4, "loftq_iter": 1}, init_adapter=True)
    gpu = get_peft_model(wrapped(), LoraConfig(r=8, lora_alpha=8, target_modules=["0"], init_lora_weights="loftq",
                                               loftq_config=LoftQConfig(loftq_bits=4)))
    for model in (cpu, gpu):
        model.to("cpu")
    a, b = cpu.base_model.model[0], gpu.base_model.model[0]
    torch.testing.assert_close(a.base_layer.weight, b.base_layer.weight, rtol=0, atol=1e-6)
    ba = lambda m: m.lora_B["default"].weight @ m.lora_A["default"].weight  # noqa: E731 (SVD signs may differ)
    torch.testing.assert_close(ba(a), ba(b), rtol=1e-3, atol=1e-4)
