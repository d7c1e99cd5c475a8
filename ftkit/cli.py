"""`ftkit <verb> RECIPE.yml [--key=value ...]`: parse, then call the verb's module. Nothing else."""
from __future__ import annotations

import argparse
import sys

from ftkit.env import go_offline
from ftkit.errors import FtkitError

VERBS = {
    "preprocess": "tokenize and cache the recipe's datasets; --debug shows decoded examples with their masks",
    "train": "fine-tune as the recipe says; prints loss and generations before/after",
    "infer": "generate with the trained model using the training prompt template (--prompt or stdin lines)",
    "merge-lora": "merge the trained LoRA adapter into the base model and save it",
    "options": "print every recipe option (generated from the schema) and the status of every Axolotl option",
    "check": "validate a recipe (an Axolotl config too) without loading a model; print what each option does here "
             "(used / alias -> canonical / ignored here, why / refused, why and fix); exit 0 when it will train",
    "bench": "benchmarks printed side by side: `bench preprocess` (rows/s, tokens/s per data_samples file), `bench memory` (estimate vs measured peak), `bench packing RECIPE` (efficiency, packed vs padded tokens/s)",
    "memory": "estimate peak training memory per device (weights, gradients, optimizer, activations) with the arithmetic",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ftkit", description="Fine-tuning cookbook: YAML recipes over transformers/peft/TRL.",
                                epilog="Any recipe option can be overridden: --key=value, --datasets.0.path=x.jsonl")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, help_ in VERBS.items():
        sp = sub.add_parser(verb, help=help_, description=help_,
                            epilog="Override any recipe option with --key=value (dotted paths into lists/dicts).")
        if verb == "bench":
            sp.add_argument("what", choices=["preprocess", "memory", "packing"], help="which benchmark")
            sp.add_argument("recipe", nargs="?", help="bench packing: the recipe whose rows are packed")
            sp.add_argument("--base-model", default="tiny:llama", help="bench preprocess: tokenizer to measure with")
        elif verb != "options":
            sp.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yml")
        if verb == "check":
            sp.add_argument("--strict", action="store_true", help="options ignored here (speed-only, internal) are errors")
        if verb == "preprocess":
            sp.add_argument("--debug", action="store_true", help="print decoded examples; trained tokens in [[...]]")
            sp.add_argument("--debug-rows", type=int, default=3, help="how many examples --debug prints")
            sp.add_argument("--check-parity", action="store_true",
                            help="check that inference prompt tokens equal the training tokens before the answer")
            sp.add_argument("--parity-rows", type=int, default=8, help="rows sampled per dataset by --check-parity")
        if verb == "infer":
            sp.add_argument("--prompt", help="one prompt; without it, one prompt per stdin line -> JSON lines")
            sp.add_argument("--max-new-tokens", type=int, default=None)
            sp.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
            sp.add_argument("--top-p", type=float, default=1.0)
            sp.add_argument("--seed", type=int, default=None)
            sp.add_argument("--no-stream", action="store_true", help="print the answer at the end, not as it comes")
            sp.add_argument("--gradio", action="store_true", help="serve a chat page instead (needs ftkit[gradio])")
            sp.add_argument("--host", default="127.0.0.1", help="--gradio address (default: this machine only)")
            sp.add_argument("--port", type=int, default=None, help="--gradio port (default: gradio picks 7860+)")
        if verb == "train":
            sp.add_argument("--num_processes", "--num-processes", type=int, default=None,
                            help="run N processes through `accelerate launch` (DDP, or the recipe's deepspeed/fsdp)")
        if verb == "memory":
            sp.add_argument("--num_processes", "--num-processes", type=int, default=1,
                            help="devices the run is spread over (ZeRO / FSDP shard states across them)")
        if verb == "bench":
            sp.add_argument("--steps", type=int, default=6, help="timed training steps per run")
            sp.add_argument("--hidden", type=int, default=256, help="hidden size of the Llama twin timed")
            sp.add_argument("--layers", type=int, default=4, help="layers of the Llama twin timed")
            sp.add_argument("--attn", default="sdpa", help="attention: sdpa, eager, flash_attention_2 (GPU)")
        if verb == "merge-lora":
            sp.add_argument("--output-dir", dest="merge_output_dir", default=None,
                            help="where to save (default: OUTPUT_DIR/merged)")
    _notebooks_parser(sub)
    return p


def _notebooks_parser(sub) -> None:
    """`ftkit notebooks run [NAMES...] [-p key=value] [--tiny] [--output-dir DIR] [--jobs N]`."""
    nb = sub.add_parser("notebooks", help="execute the cookbook notebooks headless (papermill) and report")
    nb_sub = nb.add_subparsers(dest="nb_action", required=True, metavar="ACTION")
    run = nb_sub.add_parser("run", help="run notebooks (default: all in notebooks/) and write a report")
    run.add_argument("names", nargs="*", help="notebook names, e.g. mistral evaluation (default: all)")
    run.add_argument("-p", dest="params", action="append", default=[], metavar="KEY=VALUE",
                     help="set a parameter of the notebooks' parameters cell (checked before running)")
    run.add_argument("--tiny", action="store_true", help="force tiny=True: train the offline tiny twins")
    run.add_argument("--output-dir", default="outputs/notebooks", help="executed notebooks + report.md/.html")
    run.add_argument("--jobs", type=int, default=None, help="notebooks at a time (default: cores / 2)")


def _notebooks(args) -> int:
    from ftkit.cookbook import runner

    results = runner.run(args.names, runner.parse_params(args.params), tiny=args.tiny,
                         output_dir=args.output_dir, jobs=args.jobs)
    return 0 if all(r.status == "passed" for r in results) else 1


def _preprocess(recipe, args) -> None:
    from ftkit import data, models

    tok = models.load_tokenizer(recipe)
    if recipe.rl:  # preference rows: converted and counted here, tokenized by TRL at train time
        from ftkit.data import preference as preference_data
        from ftkit.train import preference_report

        preference_data.apply_chat_template(recipe, tok)
        prepared = preference_data.prepare(recipe, tok)
        print(prepared.summary())
        for i in range(min(args.debug_rows, len(prepared.train)) if args.debug else 0):
            print(f"--- example {i} ---\n{preference_report.show_pair(tok, prepared.train[i])}")
        return
    prepared = data.prepare(recipe, tok)
    print(prepared.summary())
    if args.debug:
        for i in range(min(args.debug_rows, len(prepared.train))):
            ex = prepared.train[i]
            if "seq_lengths" in ex:  # sample_packing: a packed row, one line per example
                from ftkit.data.packing import show_packed_row

                print(f"--- packed row {i} ---\n{show_packed_row(ex, tok)}")
                continue
            print(f"--- example {i} ({len(ex['input_ids'])} tokens; trained text in [[...]]) ---")
            print(data.show_mask(ex, tok, color=sys.stdout.isatty()))
    if args.check_parity:
        from ftkit.data.parity import check_parity
        from ftkit.errors import Problem

        report = check_parity(recipe, tok, rows=args.parity_rows)
        print(report.summary())
        if not report.ok:
            raise FtkitError([Problem(m, recipe.source, "parity") for m in report.mismatches[:5]] +
                             [Problem("train/inference prompt tokens differ", recipe.source, "parity",
                                      fix="render inference prompts with the dataset's format (ftkit infer does), "
                                          "and avoid prompt text that ends with a space")])


def main(argv: list[str] | None = None) -> int:
    go_offline()
    args, extra = _parser().parse_known_args(argv)
    try:
        if args.verb == "options":
            from ftkit.recipe import options_reference

            print(options_reference())
            return 0
        if args.verb == "notebooks":
            return _notebooks(args)
        if args.verb == "bench" and args.what != "packing":  # these two need no recipe
            if args.what == "preprocess":
                from ftkit.bench.preprocess import run as bench_preprocess

                bench_preprocess(args.base_model)
            else:
                from ftkit.bench import memory as memory_bench

                print(memory_bench.run())
            return 0
        if args.verb == "bench" and not args.recipe:
            raise FtkitError("bench packing needs a recipe", where="command line",
                             fix="ftkit bench packing recipes/quickstart.yml")
        if args.verb == "check":
            from ftkit.recipe.check import check

            text, problems, checked = check(args.recipe, extra, strict=args.strict)
            print(text)
            if problems:
                raise FtkitError(problems)
            if checked.deepspeed:  # the engine file must exist too (train checks it the same way)
                from ftkit.train.distributed import deepspeed_path

                deepspeed_path(checked)
            print("ok: the recipe will train")
            return 0
        from ftkit.recipe import load_recipe

        recipe = load_recipe(args.recipe, extra)
        if args.verb in ("train", "preprocess"):
            from ftkit.log import log

            log.info(recipe.report.summary())
        if args.verb == "train" and args.num_processes:
            from ftkit.train import distributed

            distributed.launch(args.recipe, extra, args.num_processes)
        elif args.verb == "preprocess":
            _preprocess(recipe, args)
        elif args.verb == "train":
            from ftkit import train
            from ftkit.train import hub

            hub.check(recipe)  # a push that cannot work fails before any data is prepared
            train.run(recipe)
        elif args.verb == "infer":
            from ftkit import infer

            if args.gradio:
                from ftkit.infer import ui

                ui.launch(recipe, args.host, args.port, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_p=args.top_p, seed=args.seed)
                return 0
            infer.run(recipe, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_p=args.top_p, seed=args.seed, stream=not args.no_stream)
        elif args.verb == "memory":
            from ftkit.train import memory

            print(memory.run(recipe, args.num_processes))
        elif args.verb == "merge-lora":
            from ftkit.models import merge

            merge.run(recipe, args.merge_output_dir)
        elif args.verb == "bench" and args.what == "packing":
            from ftkit.bench import packing as packing_bench

            packing_bench.run(recipe, steps=args.steps, hidden=args.hidden, layers=args.layers, attn=args.attn)
    except FtkitError as e:
        print(f"ftkit: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
