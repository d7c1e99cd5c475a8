"""The LM head's chunked cross-entropy (ftkit/plugins/kernels.py): the loss and every gradient equal the
full-logits loss, through the real SFT trainer, with slices small enough that every batch spans several."""
from __future__ import annotations

import pytest
import torch

from ftkit.plugins import kernels as lm_head


@pytest.fixture
def small_slices(monkeypatch):
    """5 tokens per slice at the tiny twin's vocabulary of 926: every micro-batch spans many slices."""
    monkeypatch.setattr(lm_head, "TILE", 5 * 926)


@pytest.mark.parametrize("softcap,scale,temperature,bias", [(None, 1.0, 1.0, False), (3.0, 0.7, 1.3, True)],
                         ids=["plain", "softcap-scale-temperature-bias"])
def test_function_equals_log_softmax_of_full_logits(monkeypatch, softcap, scale, temperature, bias):
    """log p(label), entropy, top-1 and the gradients of hidden, weight and bias (through log_probs and entropy)
    against autograd on the full logits, with TRL's logit transforms (Gemma's softcap, a logit scale)."""
    monkeypatch.setattr(lm_head, "TILE", 7 * 50)  # 37 tokens -> 6 slices
    torch.manual_seed(0)
    h, w = torch.randn(37, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    b = torch.randn(50, requires_grad=True) if bias else None
    t, g_logp, g_ent = torch.randint(0, 50, (37,)), torch.randn(37), torch.randn(37)
    t[::3] = torch.nn.functional.linear(h, w, b).argmax(-1)[::3]  # some labels are the top-1 token
    params = [x for x in (h, w, b) if x is not None]

    lp, ent, _, _, top1 = lm_head.ChunkedCrossEntropy.apply(h, w, b, t, temperature, softcap, scale,
                                                              ("log_probs", "entropy", "is_top1"))
    chunked = torch.autograd.grad((lp * g_logp + ent * g_ent).sum(), params)
    z = torch.nn.functional.linear(h, w, b) * scale
    z = (softcap * torch.tanh(z / softcap) if softcap else z) / temperature
    log_p = z.log_softmax(-1)
    full_lp, full_ent = log_p.gather(-1, t[:, None]).squeeze(-1), -(log_p.exp() * log_p).sum(-1)
    full = torch.autograd.grad((full_lp * g_logp + full_ent * g_ent).sum(), params)

    torch.testing.assert_close(lp, full_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, full_ent, rtol=1e-5, atol=1e-5)
    assert torch.equal(top1, z.argmax(-1) == t) and top1.sum() >= 13
    for got, want in zip(chunked, full):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _grads(model, final_norm, run):
    """(loss, {name: grad}) of one backward, the final norm's output (the hidden states the head reads) included."""
    kept = {}

    def keep(module, args, out):
        out.retain_grad()
        kept["h"] = out

    handle = final_norm.register_forward_hook(keep)
    model.zero_grad()
    loss = run()
    loss.backward()
    handle.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), {**grads, "hidden_states": kept["h"].grad.clone()}


@pytest.mark.parametrize("adapter,logging_steps", [(None, 1), ("lora", 1), ("lora", 100)],
                         ids=["full-logged-step", "lora-logged-step", "lora-lean-step"])
def test_sft_loss_and_gradients_equal_the_full_logits_loss(make_recipe, rows64, small_slices, adapter, logging_steps):
    """A packed micro-batch (position_ids restart per example, prompts labelled -100) through ftkit's SFT trainer:
    the loss TRL computes with ftkit's chunked head, normalised by num_items_in_batch as under gradient
    accumulation, equals transformers' ForCausalLMLoss on the full logits; so do the gradients of the hidden
    states, of lm_head (full fine-tune) and of every LoRA weight. Logged steps (entropy, accuracy) and lean
    steps take different heads; both are checked."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    from ftkit.train.run import build

    recipe = make_recipe(datasets=rows64, sample_packing=True, sequence_len=128, micro_batch_size=2, bf16=False,
                         tf32=False, adapter=adapter, lora_target_linear=True, logging_steps=logging_steps,
                         learning_rate=1e-3)  # fp32 on a GPU too (gpu_speed.sh runs this file there)
    trainer = build(recipe).trainer
    model = trainer.model
    model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    labels = inputs["labels"]
    assert "attention_mask" not in inputs and (inputs["position_ids"] == 0).sum() > 2  # packed rows
    labelled = int((labels[:, 1:] != -100).sum())
    assert 0 < labelled < labels[:, 1:].numel()  # prompts and padding masked
    items = torch.tensor(labelled + 17)  # as if another micro-batch of the same step held 17 more labels

    seen = []
    original = lm_head.ChunkedCrossEntropy.apply
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_head.ChunkedCrossEntropy, "apply", lambda h, *a: (seen.append(h.shape[0]), original(h, *a))[1])
        chunked_loss, chunked = _grads(model, model.get_decoder().norm,
                                       lambda: trainer.compute_loss(model, dict(inputs), num_items_in_batch=items))
    if trainer.args.device.type == "cpu":  # on CUDA TRL's Triton kernel runs (route()), compacted as well
        assert seen == [labelled]  # ftkit's kernel ran, on the labelled positions only
    assert labelled > 5 * 3  # several slices

    plain = {k: v for k, v in inputs.items() if k != "labels"}
    full_loss, full = _grads(model, model.get_decoder().norm, lambda: ForCausalLMLoss(
        model(**plain, use_cache=False).logits, labels, model.config.vocab_size, num_items_in_batch=items))

    assert chunked_loss.item() == pytest.approx(full_loss.item(), rel=1e-5)
    trained = [n for n in full if n != "hidden_states"]
    assert trained and (any("lora_" in n for n in trained) if adapter else any("lm_head" in n for n in trained))
    assert sorted(chunked) == sorted(full)
    for name, want in full.items():
        torch.testing.assert_close(chunked[name], want, rtol=1e-4, atol=1e-6 + 1e-4 * want.abs().max().item(),
                                   msg=name)


def test_grad_accumulation_1x8_equals_8x1_with_several_slices(make_recipe, tmp_path, tiny_llama_dir, rows64,
                                                               small_slices):
    """tests/test_training_ops.py's 1x8 == 8x1 check, with the chunked head cutting every micro-batch into slices."""
    from test_training_ops import test_grad_accumulation_1x8_equals_8x1

    test_grad_accumulation_1x8_equals_8x1(make_recipe, tmp_path, tiny_llama_dir, rows64)


def test_a_micro_batch_without_labels_gives_a_zero_loss_that_backpropagates():
    h, w = torch.randn(0, 8, requires_grad=True), torch.randn(30, 8, requires_grad=True)
    lp, *_ = lm_head.ChunkedCrossEntropy.apply(h, w, None, torch.zeros(0, dtype=torch.long))
    lp.sum().backward()
    assert lp.shape == (0,) and torch.equal(w.grad, torch.zeros_like(w))


def test_the_log_line_says_what_the_slices_save():
    line = lm_head.describe(tokens=8 * 4096, vocab=128_256, device="cpu")
    # 32,768 tokens x 128,256 x 4 B = 16.81 GB of logits; slices of 2^25 // 128,256 = 261 tokens
    assert "slices of 261 tokens" in line and "16.81 GB" in line
    assert "tiles of at most 4,096 tokens" in lm_head.describe(tokens=8 * 4096, vocab=128_256, device="cuda")
    assert "fit in one slice" in lm_head.describe(tokens=16 * 256, vocab=926, device="cpu")  # the tiny twin
