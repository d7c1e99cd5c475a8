"""Helpers for tests/test_axolotl_configs.py and tests/test_wild_configs.py: an Axolotl config -> the same config on
its tiny twin and on local rows of the shape its datasets ask for (written with the config's own field names), for
a 2-step run; and the `ftkit` CLI run as a subprocess, as a user runs it."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
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


def prompt_rows(spec: dict) -> list[dict]:
    """GRPO rows as GSM8K holds them (question, answer ending '#### N'), for a `type:` transform to read."""
    return [{"question": r["question"], "answer": f"{r['answer']} #### {r['answer']}"} for r in _rows("arithmetic.jsonl")]


def preference_rows(spec: dict, method: str) -> list[dict]:
    if str(spec.get("type")).startswith("bradley_terry"):  # reward models: {input, chosen, rejected}
        return _rows("reward_pairs.jsonl")
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
    """base_model -> the twin, each dataset -> data_samples rows of its type (a stream: documents), 2 steps under tmp.

    Every step is logged (to see both losses), external loggers are switched off (they only log), sequence_len is capped at 256 (the sample rows are
    shorter; padded 4-bit steps at 2048 tokens take seconds on a CPU), so is GRPO's trl.max_completion_length (at 16:
    generating 128 tokens per completion on a CPU is slow and trains nothing the test checks); warmup_steps and
    loss_watchdog_threshold (sized for the real run and model: 2 steps would end inside the warm-up, and the untrained
    twin's loss is above any threshold for a trained model, which train refuses before step 1) are dropped, and a
    DeepSpeed config Axolotl ships
    under another name is replaced by ftkit's file of the same ZeRO stage; everything else stays as written.
    """
    data = yaml.safe_load(path.read_text())
    out = {"base_model": twin or twin_for_recipe(path), "max_steps": 2, "logging_steps": 1, "output_dir": str(tmp / "out"),
           "base_model_config": None, "tokenizer_config": None, "tokenizer_type": None,  # they name the real model's
           "loss_watchdog_threshold": None,  # sized for the real model's loss; the untrained twin starts near 6.9
           "warmup_steps": None,  # sized for the real run: 2 steps would end inside it at a learning rate near 0
           "sequence_len": min(256, data.get("sequence_len") or 256),
           "dataset_prepared_path": str(tmp / "prepared"), "wandb_project": None, "mlflow_tracking_uri": None,
           "mlflow_experiment_name": None}
    if data.get("rl") in ("grpo", "gdpo"):
        out["trl.max_completion_length"] = min(16, (data.get("trl") or {}).get("max_completion_length") or 16)
    for i, spec in enumerate(data.get("datasets") or []):
        rows = (prompt_rows(spec) if data.get("rl") in ("grpo", "gdpo") else preference_rows(spec, data.get("rl"))
                if data.get("rl") or data.get("reward_model") else sft_rows(spec))
        file = tmp / f"data-{i}.jsonl"
        file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[f"datasets.{i}.path"] = str(file)
        for key in ("split", "name", "data_files"):
            if spec.get(key):
                out[f"datasets.{i}.{key}"] = "train" if key == "split" else None
    for i, _ in enumerate(data.get("pretraining_dataset") or []):  # a hub stream -> a local file of documents
        file = tmp / f"stream-{i}.jsonl"
        file.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in _rows("completion.jsonl", 64)))
        out.update({f"pretraining_dataset.{i}.path": str(file), f"pretraining_dataset.{i}.name": None})
    if data.get("deepspeed"):
        stage = "3" if "zero3" in data["deepspeed"] else "2" if "zero2" in data["deepspeed"] else "1"
        out["deepspeed"] = str(ROOT / "recipes" / "deepspeed" / f"zero{stage}.json")
    return out


# ---------------------------------------------------------------- configs from the wild (tests/wild_configs/)
# Axolotl YAML that people wrote for their own runs, kept byte for byte, run with the model and the data swapped.
#
# What wild_run_overrides changes, and nothing else:
#   - base_model -> its tiny twin (WILD_TWINS, else the family in the name); base_model_config, tokenizer_config and
#     tokenizer_type, where written, -> unset (they name the real model's files);
#   - every dataset and test dataset -> local rows in the shape that entry asks for (wild_rows), written in the file
#     format its path names (.json array, .parquet, a folder, else .jsonl); a hub path or a local file of their
#     machine -> that file (with `name` unset and `split` -> train, the one split a local file has); `path: json`
#     + data_files (a loader name and files) and data_files without path -> data_files point at the file instead;
#   - output_dir and dataset_prepared_path -> under the test's temporary folder;
#   - max_steps: 2 and logging_steps: 1 (a 2-step run that logs both losses), sequence_len capped at 256 (the twin
#     rows are short; 4-bit steps padded to 8k tokens take minutes on a CPU);
#   - wandb_project, mlflow_tracking_uri and the upload (hub_model_id, hub_strategy, push_to_hub), where written,
#     -> unset (they need a network; they only log or upload). Other wandb_*/hub_* keys stay as written;
#   - loss_watchdog_threshold -> unset (sized for the real model; the untrained twin starts near ln(vocab));
#   - device_map naming a GPU, on a machine without one -> unset (where the model goes, not what is trained; Axolotl's
#     verdict was taken with the GPU the config was written for).
# DeepSpeed files are kept as written (ftkit maps Axolotl's deepspeed_configs/ names to its own of the same stage).

WILD = ROOT / "tests" / "wild_configs"
# Twins where the base_model name does not tell the architecture (a local folder, a fine-tune's own name) or tells
# it wrongly (Phi-4-mini is a Phi3ForCausalLM); ftkit has no StableLM, Starcoder2 or gpt-oss family, so those run on
# the Llama twin (the configs' options, not the architecture, are what is tested).
WILD_TWINS = {"13": "tiny:mistral", "15": "tiny:llama", "27": "tiny:llama", "28": "tiny:llama", "29": "tiny:llama",
              "32": "tiny:mistral", "33": "tiny:mistral", "34": "tiny:llama", "35": "tiny:llama", "38": "tiny:llama",
              "44": "tiny:gpt2", "45": "tiny:llama", "47": "tiny:mistral", "49": "tiny:mistral", "50": "tiny:llama",
              "52": "tiny:phi3", "54": "tiny:llama"}
LOADER_NAMES = {"json", "csv", "parquet", "text", "arrow"}  # `path: json` names a loader; the files are in data_files
# alpaca-family types: (column, alpaca field it holds), as Axolotl's prompt strategies read them
INSTRUCT_COLUMNS = {
    "alpaca": (("instruction", "instruction"), ("input", "input"), ("output", "output")),
    "alpaca_chat": (("instruction", "instruction"), ("input", "input"), ("output", "output")),
    "alpaca_chat.load_qa": (("question", "instruction"), ("answer", "output")),
    "context_qa.load_v2": (("context", "input"), ("question", "instruction"), ("answer", "output")),
    "oasst": (("INSTRUCTION", "instruction"), ("RESPONSE", "output")),
}
SYSTEM_TEXT = "You answer in one short sentence."


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def wild_configs() -> list[Path]:
    return sorted(WILD.glob("*.yml"))


def wild_twin(path: Path, data: dict) -> str:
    from ftkit.cookbook.twins import twin_for_model

    return WILD_TWINS.get(path.name[:2]) or twin_for_model(str(data.get("base_model")))


def _numbered(rows: list[dict], field: str) -> list[dict]:
    """The rows with repeats made distinct (the sample files repeat some rows; a config's deduplication would drop
    them): the i-th row's `field` gets " (i)" when an identical row came before."""
    seen, out = set(), []
    for i, r in enumerate(rows):
        key = json.dumps(r, sort_keys=True)
        out.append({**r, field: f"{r[field]} ({i})"} if key in seen else r)
        seen.add(key)
    return out


def _alpaca(n: int) -> list[dict]:
    """n distinct alpaca rows (instruction, input, output); the sample file has 2,400."""
    return _numbered(_rows("alpaca.jsonl", n), "instruction")


def _roles(spec: dict, keys: tuple[str, str]) -> dict:
    """Role names as the rows write them: the `roles:` aliases, sharegpt's human/gpt when messages use from/value."""
    given = spec.get("roles") or {}
    sharegpt = keys[0] == "from"
    return {role: (given.get(role) or [default])[0]
            for role, default in (("system", "system"), ("user", "human" if sharegpt else "user"),
                                  ("assistant", "gpt" if sharegpt else "assistant"))}


def _message_keys(spec: dict) -> tuple[str, str]:
    mapping = spec.get("message_property_mappings") or {}
    return (mapping.get("role") or spec.get("message_field_role") or "role",
            mapping.get("content") or spec.get("message_field_content") or "content")


def _chat_row(spec: dict, row: dict) -> dict:
    role, content = keys = _message_keys(spec)
    names = _roles(spec, keys)
    user = row["instruction"] + (f"\n{row['input']}" if row["input"] else "")
    msgs = [{role: names["user"], content: user}, {role: names["assistant"], content: row["output"]}]
    return {spec.get("field_messages") or "messages": msgs}


def _sharegpt_row(spec: dict, row: dict) -> dict:
    user = row["instruction"] + (f"\n{row['input']}" if row["input"] else "")
    turns = [{"from": spec.get("field_human") or "human", "value": user},
             {"from": spec.get("field_model") or "gpt", "value": row["output"]}]
    return {spec.get("field") or "conversations": turns}


def _custom_row(fmt: dict, row: dict) -> dict:
    """A user-defined format (`type:` a mapping): the alpaca fields under the format's column names."""
    out = {fmt.get("field_instruction") or "instruction": row["instruction"],
           fmt.get("field_input") or "input": row["input"], fmt.get("field_output") or "output": row["output"]}
    if fmt.get("field_system"):
        out[fmt["field_system"]] = SYSTEM_TEXT
    return out


def _sft_row(spec: dict, row: dict) -> dict:
    t = spec.get("type")
    if isinstance(t, dict):
        return _custom_row(t, row)
    base = str(t).split(":")[0]
    if base in INSTRUCT_COLUMNS:
        return {col: row[src] for col, src in INSTRUCT_COLUMNS[base]}
    if base.startswith("sharegpt"):
        return _sharegpt_row(spec, row)
    if base.startswith("chat_template"):
        return _chat_row(spec, row)
    text = f"{row['instruction']} {row['output']}"
    if base == "completion":  # Axolotl reads `field` (text); field_prompt/field_completion columns as the entry names
        extra = {spec[k]: row[v] for k, v in (("field_prompt", "instruction"), ("field_completion", "output")) if spec.get(k)}
        return {spec.get("field") or "text": text, **extra}
    if base == "input_output":
        return {"segments": [{"label": False, "text": row["instruction"] + "\n"}, {"label": True, "text": row["output"]}]}
    return {**_custom_row(spec, row), "text": text}  # a type Axolotl has no strategy for: the fields the entry names


def _preference_row(spec: dict, pair: dict) -> dict:
    shape = str(spec.get("type")).split(".")[-1]
    if shape.startswith("intel"):  # chatml.intel and its variants: system, question, chosen, rejected
        return {"system": SYSTEM_TEXT, "question": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}
    return {spec.get("field_prompt") or "prompt": pair["prompt"], spec.get("field_chosen") or "chosen": pair["chosen"],
            spec.get("field_rejected") or "rejected": pair["rejected"]}


def wild_rows(spec: dict, rl: str | None, n: int) -> list[dict]:
    """n rows in the shape the dataset entry asks for (its type, field names, roles)."""
    if rl:
        pairs = _rows("preference_pairs.jsonl", 10**6)  # 164 pairs, cycled
        return [_preference_row(spec, p) for p in _numbered([pairs[i % len(pairs)] for i in range(n)], "prompt")]
    return [_sft_row(spec, r) for r in _alpaca(n)]


def _rows_needed(data: dict) -> int:
    """Rows for 2 steps of the config's batch, with its held-out share and packing (several rows per sequence)."""
    batch = (data.get("micro_batch_size") or 1) * (data.get("gradient_accumulation_steps") or 1)
    val = data.get("val_set_size") or 0
    share = 1 - val if isinstance(val, float) and val < 1 else 1
    per_sequence = 8 if data.get("sample_packing") and not data.get("rl") else 1
    return min(2400, max(32, math.ceil(2 * batch * per_sequence / share * 1.5) + int(val if val >= 1 else 0)))


def write_rows(rows: list[dict], written_path: str | None, file_stem: Path) -> Path:
    """The rows in the file format the written path names: a .json array, .parquet, a folder, else JSON lines."""
    suffix = Path(str(written_path or "")).suffix.lower()
    if suffix == ".json":
        out = file_stem.with_suffix(".json")
        out.write_text(json.dumps(rows))
    elif suffix == ".parquet":
        import datasets

        out = file_stem.with_suffix(".parquet")
        datasets.Dataset.from_list(rows).to_parquet(str(out))
    elif written_path and str(written_path).startswith(("./", "/")) and not suffix:  # a local folder of files
        out = file_stem
        out.mkdir(parents=True, exist_ok=True)
        (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        out = file_stem.with_suffix(".jsonl")
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _dataset_overrides(key: str, spec: dict, file: Path) -> dict:
    """Point one dataset entry at `file`: data_files where the entry names its files there, else path."""
    if spec.get("data_files") and (not spec.get("path") or spec.get("path") in LOADER_NAMES):
        files = spec["data_files"]
        return {f"{key}.data_files": [str(file)] if isinstance(files, list) else str(file)}
    out = {f"{key}.path": str(file)}
    for name in ("data_files", "name"):
        if spec.get(name):
            out[f"{key}.{name}"] = None
    if spec.get("split"):
        out[f"{key}.split"] = "train"
    return out


def _entries(data: dict, key: str) -> list[tuple[str, dict]]:
    value = data.get(key)
    if isinstance(value, dict):  # one entry written as a mapping, not a list
        return [(key, value)]
    return [(f"{key}.{i}", spec) for i, spec in enumerate(value or []) if isinstance(spec, dict)]


def wild_run_overrides(path: Path, tmp: Path) -> dict:
    """The overrides that run a wild config on its twin and local rows for 2 steps (see the section's docstring)."""
    data = yaml.safe_load(path.read_text())
    out = {"base_model": wild_twin(path, data), "output_dir": str(tmp / "out"), "max_steps": 2, "logging_steps": 1,
           "dataset_prepared_path": str(tmp / "prepared"), "sequence_len": min(256, data.get("sequence_len") or 256)}
    out.update({k: None for k in ("base_model_config", "tokenizer_config", "tokenizer_type", "wandb_project",
                                  "mlflow_tracking_uri", "hub_model_id", "hub_strategy", "push_to_hub",
                                  "loss_watchdog_threshold") if data.get(k)})  # the twin starts near ln(vocab)
    if data.get("device_map") not in (None, "auto", "cpu") and not _has_cuda():
        out["device_map"] = None
    n = _rows_needed(data)
    for key in ("datasets", "test_datasets"):
        for entry, spec in _entries(data, key):
            stem = tmp / re.sub(r"\W", "-", entry)
            file = write_rows(wild_rows(spec, data.get("rl"), n), spec.get("path") or _first(spec.get("data_files")), stem)
            out.update(_dataset_overrides(entry, spec, file))
    return out


def _first(files) -> str | None:
    return (files[0] if files else None) if isinstance(files, list) else files


def as_cli(overrides: dict) -> list[str]:
    """The same overrides as `--key=value` arguments of `ftkit check/train` (empty = unset)."""
    def text(v):
        return "" if v is None else v if isinstance(v, str) else json.dumps(v)
    return [f"--{k}={text(v)}" for k, v in overrides.items()]


# ---------------------------------------------------------------- the CLI, one subprocess per verb

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
STEPS = re.compile(r"train loss (\S+) -> (\S+) over (\d+) steps")


def problems(stderr: str, config: Path) -> list[str]:
    """The problems of an `ftkit: error:` message, each without the file name ("line 12: key: what. Fix: ...")."""
    text = stderr[stderr.rfind("ftkit: error:"):] if "ftkit: error:" in stderr else ""
    lines = [ln.strip()[2:] if ln.strip().startswith("- ") else ln for ln in text.splitlines()]
    lines = [ln.replace("ftkit: error: ", "") for ln in lines if ln.strip() and not re.match(r"ftkit: error: \d+ problems:", ln)]
    return [re.sub(rf"^{re.escape(str(config))}:(\d+): ", r"line \1: ", ln.replace(f"{config}: ", "")) for ln in lines]


def traceback_tail(stderr: str) -> str | None:
    """`Exception: message [at the deepest frame; from the deepest ftkit frame]`, if the run ended in a traceback."""
    if "Traceback (most recent call last)" not in stderr:
        return None
    tail = stderr[stderr.rfind("Traceback (most recent call last)"):]
    tb = [re.sub(r"^\[rank\d+\]: ", "", ln) for ln in tail.splitlines()]  # torch.distributed prefixes each line
    frames = [re.sub(r'File ".*?(site-packages/|/ftkit/)(.*)", line (\d+), in (\S+)',
                     lambda m: f"{'ftkit/' if 'ftkit' in m[1] else ''}{m[2]}:{m[3]} {m[4]}", ln.strip())
              for ln in tb if ln.strip().startswith("File ")]
    ours = [f for f in frames if f.startswith("ftkit/")]
    last = next((ln for ln in reversed(tb) if ln and not ln.startswith(" ")), tb[-1])
    where = "; ".join(dict.fromkeys(frames[-1:] + ours[-1:]))
    return f"{last.strip()} [at {where or '?'}]"


def run_ftkit(verb: str, config: Path, args: list[str], timeout: int = 900) -> dict:
    """`python -m ftkit VERB CONFIG ARGS` as a user runs it: exit code, seconds, problems, traceback, and for train
    the steps trained and the loss line."""
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "ftkit", verb, str(config), *args], capture_output=True,
                              text=True, env=ENV, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "seconds": timeout, "problems": [f"no result in {timeout} s"]}
    out = {"rc": proc.returncode, "seconds": round(time.perf_counter() - t, 1),
           "problems": problems(proc.stderr, config), "traceback": traceback_tail(proc.stderr)}
    if verb == "train" and (m := STEPS.search(proc.stdout + proc.stderr)):
        out.update(steps=int(m.group(3)), loss=f"{m.group(1)} -> {m.group(2)}")
    return out
