"""`ftkit <verb> RECIPE.yml [--key=value ...]`: parse, then call the verb's module. Nothing else."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import FtkitError

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1"}

VERBS = {
    "preprocess": "tokenize and cache the recipe's datasets; --debug shows decoded examples with their masks",
    "train": "fine-tune as the recipe says; prints loss and generations before/after",
    "infer": "generate with the trained model using the training prompt template (--prompt or stdin lines)",
    "merge-lora": "merge the trained LoRA adapter into the base model and save it",
    "options": "print every recipe option (generated from the schema)",
    "bench": "benchmarks printed as side-by-side ratios: `ftkit bench packing RECIPE`",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ftkit", description="Fine-tuning cookbook: YAML recipes over transformers/peft/TRL.",
                                epilog="Any recipe option can be overridden: --key=value, --datasets.0.path=x.jsonl")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, help_ in VERBS.items():
        sp = sub.add_parser(verb, help=help_, description=help_,
                            epilog="Override any recipe option with --key=value (dotted paths into lists/dicts).")
        if verb == "bench":
            sp.add_argument("what", choices=["packing"], help="packing: efficiency table and packed/padded tokens/s")
        if verb != "options":
            sp.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yml")
        if verb == "preprocess":
            sp.add_argument("--debug", action="store_true", help="print decoded examples; trained tokens in [[...]]")
            sp.add_argument("--debug-rows", type=int, default=3, help="how many examples --debug prints")
        if verb == "infer":
            sp.add_argument("--prompt", help="one prompt; without it, one prompt per stdin line -> JSON lines")
            sp.add_argument("--max-new-tokens", type=int, default=None)
            sp.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
            sp.add_argument("--top-p", type=float, default=1.0)
            sp.add_argument("--seed", type=int, default=None)
            sp.add_argument("--no-stream", action="store_true", help="print the answer at the end, not as it comes")
        if verb == "bench":
            sp.add_argument("--steps", type=int, default=6, help="timed training steps per run")
            sp.add_argument("--hidden", type=int, default=256, help="hidden size of the Llama twin timed")
            sp.add_argument("--layers", type=int, default=4, help="layers of the Llama twin timed")
            sp.add_argument("--attn", default="sdpa", help="attention: sdpa, eager, flash_attention_2 (GPU)")
        if verb == "merge-lora":
            sp.add_argument("--output-dir", dest="merge_output_dir", default=None,
                            help="where to save (default: OUTPUT_DIR/merged)")
    return p


def _preprocess(recipe, args) -> None:
    from . import data, models

    tok = models.load_tokenizer(recipe)
    prepared = data.prepare(recipe, tok)
    print(prepared.summary())
    if args.debug:
        for i in range(min(args.debug_rows, len(prepared.train))):
            ex = prepared.train[i]
            if "seq_lengths" in ex:  # sample_packing: a packed row, one line per example
                from .packing import show_packed_row

                print(f"--- packed row {i} ---\n{show_packed_row(ex, tok)}")
                continue
            print(f"--- example {i} ({len(ex['input_ids'])} tokens; trained text in [[...]]) ---")
            print(data.show_mask(ex, tok, color=sys.stdout.isatty()))


def main(argv: list[str] | None = None) -> int:
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    args, extra = _parser().parse_known_args(argv)
    try:
        if args.verb == "options":
            from .config import options_reference

            print(options_reference())
            return 0
        from .config import load_recipe

        recipe = load_recipe(args.recipe, extra)
        if args.verb == "preprocess":
            _preprocess(recipe, args)
        elif args.verb == "train":
            from . import train

            train.run(recipe)
        elif args.verb == "infer":
            from . import infer

            infer.run(recipe, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_p=args.top_p, seed=args.seed, stream=not args.no_stream)
        elif args.verb == "merge-lora":
            from . import merge

            merge.run(recipe, args.merge_output_dir)
        elif args.verb == "bench" and args.what == "packing":
            from . import packing_bench

            packing_bench.run(recipe, steps=args.steps, hidden=args.hidden, layers=args.layers, attn=args.attn)
    except FtkitError as e:
        print(f"ftkit: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
