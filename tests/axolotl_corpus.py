"""Helpers for tests/test_axolotl_configs.py: an Axolotl-style config -> the same config on its tiny twin and on
data_samples/ rows of the same type (written with the config's own field names), for a 2-step run."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from ftkit.cookbook.twins import twin_for_recipe

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
ROWS = 16  # rows per dataset: 2 steps of the largest batch in the corpus (8 x 2 accumulated)


def _rows(name: str, n: int = ROWS) -> list[dict]:
    with open(SAMPLES / name) as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def _msg(spec: dict, role: str, content: str) -> dict:
    """One message written with the dataset's role/content keys and role names."""
    mapping = spec.get("message_property_mappings") or {}
    role_key = mapping.get("role") or spec.get("message_field_role") or "role"
    content_key = mapping.get("content") or spec.get("message_field_content") or "content"
    roles = spec.get("roles") or {}
    return {role_key: (roles.get(role) or [role])[0], content_key: content}


def sft_rows(spec: dict) -> list[dict]:
    t = spec.get("type")
    if isinstance(t, dict):  # a custom format: the alpaca rows under the format's column names
        return [{t.get("field_instruction", "instruction"): r["instruction"], t.get("field_input", "input"): r["input"],
                 t.get("field_output", "output"): r["output"]} for r in _rows("alpaca.jsonl")]
    if t == "chat_template":
        field = spec.get("field_messages") or "messages"
        return [{field: [_msg(spec, m["role"], m["content"]) for m in r["messages"]]} for r in _rows("chat.jsonl")]
    if t == "completion":
        return [{spec.get("field") or "text": r["text"]} for r in _rows("completion.jsonl")]
    return _rows("alpaca.jsonl")  # alpaca and its prompt styles


def preference_rows(spec: dict, method: str) -> list[dict]:
    shape = str(spec.get("type")).split(".")[-1]
    if method == "kto":
        rows = _rows("kto.jsonl")
        if shape == "ultra":  # the completion as a message list ending in the answer
            return [{"prompt": r["prompt"], "label": r["label"],
                     "completion": [_msg(spec, "user", r["prompt"]), _msg(spec, "assistant", r["completion"])]}
                    for r in rows]
        return rows
    if shape == "intel":
        return _rows("preference_intel.jsonl")
    if shape in ("ultra", "argilla"):
        return _rows("preference_ultra.jsonl")
    pairs = _rows("preference_pairs.jsonl")
    if shape == "default":
        chosen, rejected = spec.get("field_chosen") or "chosen", spec.get("field_rejected") or "rejected"
        return [{spec.get("field_messages") or "messages": [_msg(spec, "user", r["prompt"])],
                 chosen: _msg(spec, "assistant", r["chosen"]), rejected: _msg(spec, "assistant", r["rejected"])}
                for r in pairs]
    return pairs


def twin_run_overrides(path: Path, tmp: Path, twin: str | None = None) -> dict:
    """base_model -> the twin, each dataset -> data_samples rows of its type, 2 steps written under tmp.

    Every step is logged (to see both losses), external loggers are switched off (they only log), sequence_len is capped at 256 (the sample rows are
    shorter; padded 4-bit steps at 2048 tokens take seconds on a CPU) and a DeepSpeed config Axolotl ships
    under another name is replaced by ftkit's file of the same ZeRO stage; everything else stays as written.
    """
    data = yaml.safe_load(path.read_text())
    out = {"base_model": twin or twin_for_recipe(path), "max_steps": 2, "logging_steps": 1, "output_dir": str(tmp / "out"),
           "base_model_config": None, "tokenizer_config": None, "tokenizer_type": None,  # they name the real model's
           "sequence_len": min(256, data.get("sequence_len") or 256),
           "dataset_prepared_path": str(tmp / "prepared"), "wandb_project": None, "mlflow_tracking_uri": None,
           "mlflow_experiment_name": None}
    for i, spec in enumerate(data.get("datasets") or []):
        rows = preference_rows(spec, data["rl"]) if data.get("rl") else sft_rows(spec)
        file = tmp / f"data-{i}.jsonl"
        file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[f"datasets.{i}.path"] = str(file)
        for key in ("split", "name", "data_files"):
            if spec.get(key):
                out[f"datasets.{i}.{key}"] = "train" if key == "split" else None
    if data.get("deepspeed"):
        stage = "3" if "zero3" in data["deepspeed"] else "2" if "zero2" in data["deepspeed"] else "1"
        out["deepspeed"] = str(ROOT / "recipes" / "deepspeed" / f"zero{stage}.json")
    return out


AXOLOTL_CLONE = Path("/work/.mirror/axolotl-ai-cloud+axolotl/repo")  # a bare clone (git show reads it)


def axolotl_example(name: str, tmp: Path) -> Path | None:
    """Axolotl's examples/<name> written under tmp, from $AXOLOTL_EXAMPLES or the bare clone; None when neither is here."""
    import os
    import subprocess

    if os.environ.get("AXOLOTL_EXAMPLES") and (Path(os.environ["AXOLOTL_EXAMPLES"]) / name).is_file():
        text = (Path(os.environ["AXOLOTL_EXAMPLES"]) / name).read_text()
    elif AXOLOTL_CLONE.is_dir():
        done = subprocess.run(["git", f"--git-dir={AXOLOTL_CLONE}", "show", f"HEAD:examples/{name}"],
                              capture_output=True, text=True)
        if done.returncode:
            return None
        text = done.stdout
    else:
        return None
    path = tmp / name.replace("/", "-")
    path.write_text(text)
    return path
