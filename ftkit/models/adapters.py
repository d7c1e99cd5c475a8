"""LoRA-family adapters via peft: the LoraConfig a recipe asks for, fresh or continued, and reloading.

peft does the work (LoRA, DoRA, rsLoRA, modules_to_save, LoftQ on CUDA). ftkit adds one thing peft
lacks: LoftQ on a CPU (peft 0.21.2 `loftq_init` moves every weight to "cuda"), done with peft's own
SVD helper and bitsandbytes' CPU quantizer so the result is the same initialisation.
"""
from __future__ import annotations

from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.recipe import Recipe

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
SCORE_HEADS = ("score", "classifier")  # a sequence-classification head (peft's SEQ_CLS modules_to_save)


def linear_names(model) -> set[str]:
    """Names of the linear layers (Linear, 4/8-bit Linear, Conv1D) except the output head, as leaf names
    (q_proj, ...): Axolotl's lora_target_linear. peft's 'all-linear' would also adapt fused MoE expert
    weights, which Axolotl does not (and which peft cannot do with lora_dropout > 0)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    found = _maybe_include_all_linear_layers(LoraConfig(target_modules="all-linear"), model).target_modules
    heads = SCORE_HEADS if type(model).__name__.endswith("ForSequenceClassification") else ()
    return {name.rsplit(".", 1)[-1] for name in found} - set(heads)  # a reward model's head is trained whole


def _check_listed(recipe: Recipe, model, listed: list[str]) -> None:
    """Listed names the model lacks (peft matches a name or a dotted suffix, and errors only when no entry matches
    at all: one misspelled name is silently not adapted): a note when others are adapted (as peft and Axolotl do),
    an error when none of the list exists and lora_target_linear does not add any."""
    modules = [name for name, _ in model.named_modules()]
    missing = [t for t in listed if not any(m == t or m.endswith("." + t) for m in modules)]
    if not missing:
        return
    names = ", ".join(map(repr, missing))
    if len(missing) < len(listed) or recipe.lora_target_linear:
        log.warning(f"lora_target_modules: the model ({model.config.model_type}) has no module named {names}; "
                    "the others are adapted (as peft and Axolotl do)")
        return
    raise FtkitError(f"the model ({model.config.model_type}) has none of the modules lora_target_modules names "
                     f"({names}), so nothing would be adapted", file=recipe.source, where="lora_target_modules",
                     fix=f"use its linear layers: {', '.join(sorted(linear_names(model)))} (or lora_target_linear: "
                         "true for all of them)")


def lora_targets(recipe: Recipe, model) -> list[str] | str:
    """Explicit list (or one regex), every linear layer except the head (lora_target_linear), both (their
    union, as Axolotl does), or the architecture's default. Listed names the model lacks are left out (said);
    an error only when none of them exists."""
    modules = recipe.lora_target_modules
    if modules and isinstance(modules, str):
        if recipe.lora_target_linear:
            raise FtkitError("lora_target_modules as one regex cannot be combined with lora_target_linear",
                             where="lora_target_modules", fix="list the module names, or drop lora_target_linear")
        return modules
    if modules:
        _check_listed(recipe, model, list(modules))
    if recipe.lora_target_linear:
        return sorted(linear_names(model) | set(modules or ()))
    if modules:
        return list(modules)
    if recipe.lora_target_parameters:
        return []  # only parameters are adapted
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    from ftkit.models.families import ALIASES, FAMILIES

    model_type = model.config.model_type
    family = FAMILIES.get(ALIASES.get(model_type, model_type))  # peft has no default for some (phi3): the family's own
    targets = DEFAULTS.get(model_type) or (family.lora_targets if family else None)
    if not targets:
        raise FtkitError(f"no default LoRA targets known for model_type {model.config.model_type!r}",
                         where="lora_target_modules", fix="list them, or set lora_target_linear: true")
    return list(targets)


# less common LoraConfig arguments, passed only when the recipe sets them: recipe option -> peft name
VARIANTS = {"lora_target_parameters": "target_parameters", "lora_rank_pattern": "rank_pattern",
            "lora_alpha_pattern": "alpha_pattern", "peft_layers_to_transform": "layers_to_transform",
            "peft_layers_pattern": "layers_pattern", "peft_layer_replication": "layer_replication",
            "peft_trainable_token_indices": "trainable_token_indices"}


def lora_config(recipe: Recipe, model):
    """The recipe's LoRA options as a peft LoraConfig. init_lora_weights True: A random, B zero. A reward
    model's task (SEQ_CLS) trains and saves its new score head with the adapter."""
    from peft import LoftQConfig, LoraConfig

    loftq = recipe.loftq
    init = "loftq" if loftq else True if recipe.peft_init_lora_weights is None else recipe.peft_init_lora_weights
    variants = {name: getattr(recipe, key) for key, name in VARIANTS.items() if getattr(recipe, key) is not None}
    return LoraConfig(
        r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
        target_modules=lora_targets(recipe, model), modules_to_save=recipe.lora_modules_to_save,
        fan_in_fan_out=recipe.lora_fan_in_fan_out, use_dora=recipe.peft_use_dora, use_rslora=recipe.peft_use_rslora,
        init_lora_weights=init, bias="none", task_type="SEQ_CLS" if recipe.reward_model else "CAUSAL_LM",
        loftq_config=LoftQConfig(loftq_bits=loftq.loftq_bits, loftq_iter=loftq.loftq_iter) if loftq else {},
        **variants, **({"ensure_weight_tying": True} if recipe.peft_ensure_weight_tying else {}))


def apply_adapter(recipe: Recipe, model):
    """Wrap the model with the recipe's adapter: continued from lora_model_dir, or fresh."""
    if recipe.lora_model_dir:
        peft_model = load_adapter(model, recipe.lora_model_dir, trainable=True, where="lora_model_dir")
        saved = peft_model.peft_config["default"]
        differ = [f"{k}: {getattr(recipe, k)} -> {v}" for k, v in (("lora_r", saved.r), ("lora_alpha", saved.lora_alpha),
                                                                    ("peft_use_dora", saved.use_dora))
                  if getattr(recipe, k) != v]
        log.info(f"lora_model_dir: continuing training from the adapter in {recipe.lora_model_dir}"
                 + (f" (its own settings win: {', '.join(differ)})" if differ else ""))
        return peft_model
    from peft import get_peft_model

    config = lora_config(recipe, model)
    loftq_here = _defer_loftq(config)
    try:
        peft_model = get_peft_model(model, config, autocast_adapter_dtype=recipe.peft_autocast_adapter_dtype)
    except ValueError as e:
        raise FtkitError(f"LoRA could not be applied: {str(e).splitlines()[0]}", where="lora_target_modules",
                         fix="use module names that exist in the model (print(model) lists them) or "
                             "lora_target_linear: true") from None
    if loftq_here:
        log.info("LoftQ: peft runs it on CUDA only; computing the same initialisation on the CPU")
        loftq_cpu(peft_model, config.loftq_config, init_adapter=True)
    return peft_model


def _defer_loftq(config) -> bool:
    """True when LoftQ must be computed by ftkit (loftq_cpu) after peft made a plain adapter: peft's LoftQ
    would move every weight to "cuda"."""
    import torch

    here = getattr(config, "init_lora_weights", None) == "loftq" and not torch.cuda.is_available()
    if here:
        config.init_lora_weights = True
    return here


def load_adapter(model, adapter_dir: str | Path, trainable: bool = False, where: str = "lora_model_dir"):
    """A saved adapter onto `model`. A LoftQ adapter's base weights are rebuilt first (on CPU by ftkit)."""
    from peft import PeftConfig, PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FtkitError(f"no adapter (adapter_config.json) in {adapter_dir}", where=where,
                         fix="point it at the output_dir of a run with adapter: lora or qlora, or train first")
    config = PeftConfig.from_pretrained(str(adapter_dir))
    loftq_here = _defer_loftq(config)
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), config=config, is_trainable=trainable)
    keep_saved_dtypes(peft_model, adapter_dir)
    if loftq_here:
        loftq_cpu(peft_model, config.loftq_config, init_adapter=False)
    return peft_model


_SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def keep_saved_dtypes(peft_model, adapter_dir: Path) -> None:
    """Adapter weights back in the dtype they were saved (trained) in, so reloaded logits equal trained ones.

    TRL trains a QLoRA/8-bit adapter in bf16 (the QLoRA paper's recipe) and saves it so; peft's loader
    upcasts it to fp32, which shifts logits by ~1e-3 on the twin.
    """
    import torch
    from safetensors import safe_open

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        return
    with safe_open(str(path), "pt") as f:
        saved = {key: f.get_slice(key).get_dtype() for key in f.keys()}
    for name, param in peft_model.named_parameters():
        dtype = _SAFETENSORS_DTYPES.get(saved.get(name.replace(".default.", "."), ""))
        if dtype and param.dtype != getattr(torch, dtype):
            param.data = param.data.to(getattr(torch, dtype))


def loftq_cpu(peft_model, loftq_config: dict, init_adapter: bool) -> None:
    """peft's LoftQ on the CPU: base W -> Q (its nf4/int8 round trip), and LoRA B·A ≈ W - Q by SVD.

    Deterministic, so reloading a LoftQ adapter rebuilds the same Q (init_adapter=False keeps the
    loaded A and B). Mirrors peft.utils.loftq_utils.loftq_init, whose only CUDA part is the device.
    """
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils.loftq_utils import _low_rank_decomposition

    bits, iters = loftq_config["loftq_bits"], loftq_config.get("loftq_iter", 1)
    with torch.no_grad():
        for module in peft_model.modules():
            if not isinstance(module, LoraLayer) or "default" not in module.lora_A:
                continue
            weight = module.get_base_layer().weight
            w = weight.data.float()
            res = w
            for i in range(iters):
                q = _quant_roundtrip(res, bits)  # what the base would hold in `bits` bits
                lr = _low_rank_decomposition(w - q, reduced_rank=module.r["default"])
                if i + 1 < iters:
                    res = w - lr["L"] @ lr["R"]
            if init_adapter:
                module.lora_A["default"].weight.data = lr["R"].to(module.lora_A["default"].weight.dtype)
                module.lora_B["default"].weight.data = lr["L"].to(module.lora_B["default"].weight.dtype)
            weight.data = q.to(weight.dtype)
    peft_model.peft_config["default"].init_lora_weights = "loftq"  # the saved config says how the base was made


def _quant_roundtrip(w, bits: int):
    """Dequantize(quantize(w)) with bitsandbytes on the CPU (nf4 without double quant, or int8 rows)."""
    import bitsandbytes.functional as F

    if bits == 4:
        packed, state = F.quantize_4bit(w.contiguous(), quant_type="nf4", blocksize=64)
        return F.dequantize_4bit(packed, state).float()
    q, scale, _ = F.int8_vectorwise_quant(w.half())
    return F.int8_vectorwise_dequant(q, scale).float()
