"""Recipe options of the data path: datasets and their formats, lengths, masking, mixing, the prepared cache."""
from __future__ import annotations

import os
from typing import Any, Literal, Optional, Union

from pydantic import field_validator, model_validator

from ftkit.recipe.base import PAIRED, SFT, Strict, option, problem


class UserDefinedFormat(Strict):
    """`type:` given as a mapping: a prompt format written in the recipe (Axolotl's custom prompt)."""

    system_prompt: str = option("", description="System text used when a row has no `field_system` value.")
    system_format: str = option("{system}", description="How the system text is written; must contain {system}.")
    field_system: str = option("system", description="Column holding a per-row system text.")
    field_instruction: str = option("instruction", description="Column holding the instruction.")
    field_input: str = option("input", description="Column holding the optional input.")
    field_output: str = option("output", description="Column holding the trained answer.")
    format: str = option("{instruction} {input} ", description="Prompt for rows with an input; uses {instruction} and {input}.")
    no_input_format: str = option("{instruction} ", description="Prompt for rows without input; uses {instruction} only.")


class DatasetLoadOptions(Strict):
    """Where a dataset's rows come from (local files, a saved dataset directory, or a hub name)."""

    data_files: Optional[Union[str, list[str]]] = option(None, description="Files inside `path` to read (default: all).")
    split: str = option("train", description="Split to read from the loaded dataset.")
    ds_type: Optional[Literal["json", "parquet", "csv", "arrow", "text"]] = option(
        None, description="File format when the suffix does not tell (json covers .jsonl).")
    name: Optional[Union[str, list[str]]] = option(None, description="Configuration (subset) of a hub dataset; a list loads several and concatenates them.")
    revision: Optional[str] = option(None, description="Hub revision (branch, tag or commit) of a hub dataset.")
    shards: Optional[int] = option(None, ge=1, description="Shuffle (seeded) and split this dataset into N shards, keep one (see shards_idx).")
    shards_idx: int = option(0, ge=0, description="Which shard to keep when `shards` is set.")


class DatasetFormatOptions(Strict):
    """Options of the prompt formats (which ones apply depends on `type`; see data_samples/README.md)."""

    field: Optional[str] = option(None, methods=SFT, description="completion: the text column (default: text).")
    chunk_long_rows: bool = option(True, methods=SFT, ftkit_only=True, description="completion: rows longer than sequence_len are split into sequence_len chunks, as Axolotl does (false: dropped and counted).")
    field_messages: Optional[str] = option(None, description="chat_template: column with the message list (default: messages; sharegpt: conversations); preference type chat_template.default: the prompt messages.")
    message_property_mappings: Optional[dict[str, str]] = option(None, description="chat_template: message property -> key in the data, e.g. {role: from, content: value}; other properties (name, tool_calls, ...) are passed to the template.")
    message_field_role: Optional[str] = option(None, description="chat_template: role key inside a message (default: role; sharegpt: from). Same as message_property_mappings.role.")
    message_field_content: Optional[str] = option(None, description="chat_template: text key inside a message (default: content; sharegpt: value). Same as message_property_mappings.content.")
    message_field_training: Optional[str] = option(None, methods=SFT, description="chat_template: key of a per-message true/false that overrides roles_to_train (default: training).")
    roles: Optional[dict[str, list[str]]] = option(None, description="chat_template: role -> role names used in the data, e.g. {assistant: [gpt, bot]}; replaces the default mapping.")
    roles_to_train: Optional[list[str]] = option(None, methods=SFT, description="chat_template: roles whose turns are trained (default: [assistant]).")
    train_on_eos: Optional[Literal["turn", "last", "all", "none"]] = option(
        None, methods=SFT, description="chat_template: which eos tokens after a turn are trained: turn (of trained turns; default), last, all, none.")
    train_on_eot: Optional[Literal["turn", "last", "all", "none"]] = option(
        None, methods=SFT, description="chat_template: which end-of-turn tokens (eot_tokens) are trained; default: train_on_eos.")
    drop_system_message: bool = option(False, methods=SFT, description="chat_template: drop a conversation's first message when it is a system message.")
    field_tools: Optional[str] = option(None, methods=SFT, description="chat_template: column with tool definitions passed to the template as `tools` (default: tools, when the column exists).")
    chat_template: Optional[str] = option(None, methods=SFT, description="chat_template: tokenizer_default, a name (chatml, llama3, mistral, gemma, qwen, phi3) or Jinja text; default: the recipe's.")
    conversation: Optional[str] = option(None, methods=SFT, description="sharegpt: a FastChat conversation template (vicuna_v1.1, alpaca, llama-2, chatml, ...; see docs/axolotl-data.md) the rows are rendered with, as Axolotl's sharegpt did; default: the tokenizer's chat template.")
    field_human: Optional[str] = option(None, methods=SFT, description="sharegpt: the data's role name for the user (added to roles.user).")
    field_model: Optional[str] = option(None, methods=SFT, description="sharegpt: the data's role name for the model (added to roles.assistant).")
    field_instruction: Optional[str] = option(None, methods=SFT, ftkit_only=True, description="Belongs under type: (a custom format); written here only its default (instruction) is accepted, a no-op as in Axolotl.")
    field_input: Optional[str] = option(None, methods=SFT, ftkit_only=True, description="Belongs under type: (a custom format); written here only its default (input) is accepted, a no-op as in Axolotl.")
    field_output: Optional[str] = option(None, methods=SFT, ftkit_only=True, description="Belongs under type: (a custom format); written here only its default (output) is accepted, a no-op as in Axolotl.")
    field_system: Optional[str] = option(None, methods=SFT, ftkit_only=True, description="Belongs under type: (a custom format); written here only its default (system) is accepted, a no-op as in Axolotl.")
    field_chosen: Optional[str] = option(None, methods=PAIRED, description="Preference rows: the column of the chosen answer (default: chosen).")
    field_rejected: Optional[str] = option(None, methods=PAIRED, description="Preference rows: the column of the rejected answer (default: rejected).")


class DatasetSpec(DatasetLoadOptions, DatasetFormatOptions):
    """One entry of `datasets:`."""

    path: str = option(description="Local file or directory (json/jsonl/parquet/csv/arrow), a save_to_disk directory, or a hub dataset name. May be left out when data_files names the files (their folder becomes path).")

    @model_validator(mode="before")
    @classmethod
    def _path_from_data_files(cls, data):
        """No path but data_files (Axolotl loads them with the builder of their suffix or ds_type): path is their
        common folder and data_files are named inside it. {data_files: [d/a.jsonl, d/b.jsonl]} -> path d, [a, b]."""
        if not isinstance(data, dict) or data.get("path") is not None or not data.get("data_files"):
            return data
        files = [data["data_files"]] if isinstance(data["data_files"], str) else data["data_files"]
        if not all(isinstance(f, str) for f in files) or len({os.path.isabs(f) for f in files}) != 1:
            return data  # not names, or absolute and relative names mixed: no common folder
        folder = os.path.commonpath([os.path.dirname(f) or "." for f in files])
        if not folder:
            return data
        names = [os.path.relpath(f, folder) for f in files]
        return {**data, "path": folder, "data_files": names[0] if isinstance(data["data_files"], str) else names}
    type: Optional[Union[str, UserDefinedFormat]] = option(None, description="Prompt format (see data_samples/README.md), or a mapping for a format written in the recipe. Empty: rows with input_ids pass through as tokenized, other rows are read as alpaca.")


class PretrainingDataset(Strict):
    """One entry of `pretraining_dataset:`: raw text read as a stream while training (ftkit/plugins/stream.py)."""

    path: str = option(description="Local file or folder (jsonl/json/parquet/csv/txt) or a hub dataset name, read with datasets' streaming mode.")
    name: Optional[str] = option(None, description="Configuration (subset) of a hub dataset, e.g. en for allenai/c4.")
    split: str = option("train", description="Split to stream.")
    data_files: Optional[Union[str, list[str]]] = option(None, description="Files inside `path` (names or globs) to stream (default: all).")
    ds_type: Optional[Literal["json", "parquet", "csv", "text"]] = option(None, description="File format when the suffix does not tell (.txt: text, one document per line).")
    revision: Optional[str] = option(None, description="Hub revision (branch, tag or commit) of a hub dataset.")
    text_column: str = option("text", description="Column holding each document's text.")
    type: Optional[Literal["pretrain", "completion"]] = option("pretrain", description="pretrain (or completion): every token of the text is trained.")
    skip: Optional[int] = option(None, ge=0, description="Documents skipped at the start of the stream.")


class StreamOptions(Strict):
    """Streaming pre-training: raw text tokenized and packed on the fly, never prepared or cached (plugins/stream.py)."""

    pretraining_dataset: Optional[list[PretrainingDataset]] = option(None, methods=SFT, description="Raw text streamed while training (entries read one after the other, then again from the start); needs max_steps; replaces datasets. Not cached: a resume continues at the saved position of the stream.")
    streaming: Optional[bool] = option(None, methods=SFT, description="true with pretraining_dataset (it streams anyway); streaming `datasets:` (SFT rows) is not implemented.")
    streaming_multipack_buffer_size: int = option(10_000, ge=1, methods=SFT, description="Documents of a stream read, tokenized and packed together (a larger buffer packs tighter and shuffles wider).")
    pretrain_multipack_attn: bool = option(True, methods=SFT, description="Streamed packed rows: attention stays inside each document (position_ids restart); false lets a row attend across its documents.")
    pretraining_sample_concatenation: bool = option(False, methods=SFT, description="Streams without sample_packing: concatenate documents in order into rows of up to sequence_len (attending across them) instead of one document per row.")

    @field_validator("pretraining_dataset", mode="before")
    @classmethod
    def _path_alone(cls, v):
        """`pretraining_dataset: owner/name` (Axolotl's short form) -> one entry with that path; a list of paths too."""
        v = [v] if isinstance(v, str) else v
        return [{"path": e} if isinstance(e, str) else e for e in v] if isinstance(v, list) else v


def stream_problems(r) -> list:
    """What a stream needs (max_steps: it has no length) and the options that cannot apply to one."""
    if not r.pretraining_dataset:
        return [not r.datasets and problem("datasets", "required option is missing (at least 1 entry)",
                                           "add `datasets:` (or `pretraining_dataset:` to stream raw text)"),
                r.streaming and problem("streaming", "streaming `datasets:` (SFT rows) is not implemented; "
                                        "pretraining_dataset streams raw text", "remove streaming (datasets are "
                                        "prepared and cached), or put raw text under pretraining_dataset")]
    no = "a stream has no length to split, shard or deduplicate"
    return [r.max_steps is None and problem("max_steps", "a stream has no length, so the run's length must be given",
                                            "add max_steps: N (one step trains micro_batch_size x "
                                            "gradient_accumulation_steps rows of up to sequence_len tokens)"),
            r.datasets and problem("datasets", "pretraining_dataset streams the training rows; datasets would not be "
                                   "read", "keep one: remove datasets, or pretraining_dataset"),
            r.test_datasets and problem("test_datasets", "evaluation next to a stream is not implemented",
                                        "remove test_datasets (eval_prompts show what the model learned)"),
            *[getattr(r, k) and problem(k, f"{no}", f"remove {k}") for k in
              ("val_set_size", "dataset_shard_num", "dataset_exact_deduplication")]]


class DataOptions(Strict):
    datasets: list[DatasetSpec] = option(default_factory=list, description="Training data (required unless pretraining_dataset streams it); see data_samples/README.md for the formats.")
    sequence_len: int = option(512, ge=8, le=1_048_576, description="Longest example in tokens; longer rows are dropped and counted (completion rows are split).")
    train_on_inputs: bool = option(False, methods=SFT, description="Also train on prompt tokens (default: only the response is trained).")
    test_datasets: list[DatasetSpec] = option(default_factory=list, description="The eval set of a supervised run, instead of a val_set_size split (same entry options as datasets). With rl: or reward_model: held-out rows of the same types, measured before and after training: preference pairs (logp(chosen) - logp(rejected)), GRPO prompts (mean reward) or reward-model pairs (score(chosen) > score(rejected)).")
    min_sample_len: int = option(2, ge=1, description="Rows with fewer tokens are dropped and counted (Axolotl's default 2: a 1-token row has nothing to predict).")
    val_set_size: float = option(0.0, ge=0, description="Held-out fraction (<1) or row count (>=1) for evaluation.")
    dataset_prepared_path: Optional[str] = option(None, description="Directory for the tokenized-data cache (keyed by a fingerprint).")
    dataset_exact_deduplication: bool = option(False, description="Drop rows identical to an earlier one (after tokenizing; counted), as Axolotl does.")


class PromptOptions(Strict):
    """Tokenizer-side options of the data path: chat template, added tokens, preprocessing."""

    chat_template: Optional[str] = option(None, description="Chat template written into the tokenizer (and used by chat datasets): tokenizer_default, chatml, llama3, mistral, gemma, qwen, phi3 or Jinja text (Axolotl's chat_template_jinja is read into it).")
    chat_template_kwargs: dict[str, Any] = option(default_factory=dict, methods=SFT, description="Extra variables for the chat template at every render, e.g. {enable_thinking: false}.")
    default_system_message: Optional[str] = option(None, methods=SFT, description="Replaces the chat template's built-in default system text ('You are a helpful assistant.'), as Axolotl does; an error when the template has none.")
    eot_tokens: Optional[list[str]] = option(None, methods=SFT, description="chat_template: tokens that end a turn (trained per train_on_eot); default: the template's own end-of-turn token.")
    tokens: list[str] = option(default_factory=list, description="Extra (non-special) tokens added to the vocabulary; embeddings are resized.")
    dataset_processes: Optional[int] = option(None, ge=1, description="Processes for tokenizing (datasets.map num_proc); default 1 below 20,000 rows, else the CPU count. Axolotl: dataset_num_proc.")
    excess_length_strategy: Literal["drop", "truncate"] = option("drop", description="Rows longer than sequence_len: drop them (counted) or truncate them to sequence_len.")
    shuffle_merged_datasets: bool = option(True, description="Shuffle the rows (seeded) after mixing the datasets and before the length filter, as Axolotl does.")
    shuffle_before_merging_datasets: bool = option(False, methods=SFT, description="Also shuffle each dataset on its own before they are mixed.")
    dataset_shard_num: Optional[int] = option(None, ge=1, description="Split the mixed training data into N shards and keep one (see dataset_shard_idx).")
    dataset_shard_idx: int = option(0, ge=0, description="Which shard of the mixed data to keep.")
