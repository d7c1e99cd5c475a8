"""`ftkit <verb> RECIPE.yml [--key=value ...]`: parse, then call the verb's module. Nothing else."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from ftkit.env import die_with_parent, set_process_env
from ftkit.errors import FtkitError

VERBS = {
    "preprocess": "tokenize and cache the recipe's datasets; --debug shows decoded examples with their masks",
    "train": "fine-tune as the recipe says; prints loss and generations before/after",
    "infer": "generate with the trained model using the training prompt template (--prompt or stdin lines)",
    "evaluate": "eval loss and perplexity of the trained model on the eval split (or --dataset), plus the "
                "assertion evals over the recipe's eval_prompts; --json writes them",
    "merge-lora": "merge the trained LoRA adapter into the base model and save it",
    "options": "print every recipe option (generated from the schema), model and data first, and the status of every Axolotl option",
    "check": "validate a recipe (an Axolotl config too) without loading a model; print what each option does here "
             "(used / alias -> canonical / ignored here, why / refused, why and fix); exit 0 when it will train",
    "bench": "benchmarks printed side by side: `bench compare` (ftkit vs TRL's packer, a bare tokenize loop, a bare TRL script: ratios), `bench preprocess` (rows/s, tokens/s per data_samples file), `bench memory` (estimate vs measured peak, the chunked LM head's saving, the CPU allocator's cost), `bench packing RECIPE` (efficiency, packed vs padded tokens/s)",
    "memory": "estimate peak training memory per device (weights, gradients, optimizer, activations) with the arithmetic",
}


def _parser() -> argparse.ArgumentParser:
    from ftkit import __version__

    p = argparse.ArgumentParser(prog="ftkit", description="Fine-tuning cookbook: YAML recipes over transformers/peft/TRL.",
                                epilog="Any recipe option can be overridden: --key=value, --datasets.0.path=x.jsonl")
    p.add_argument("--version", action="version", version=f"ftkit {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, help_ in VERBS.items():
        sp = sub.add_parser(verb, help=help_, description=help_,
                            epilog="Override any recipe option with --key=value (dotted paths into lists/dicts).")
        if verb == "bench":
            sp.add_argument("what", choices=["compare", "preprocess", "memory", "packing"], help="which benchmark")
            sp.add_argument("recipe", nargs="?", help="bench packing: the recipe whose rows are packed")
            sp.add_argument("--base-model", default="tiny:llama", help="bench preprocess: tokenizer to measure with")
        elif verb != "options":
            sp.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yml")
        if verb == "check":
            sp.add_argument("--strict", action="store_true", help="options ignored here (speed-only, internal) are errors")
            sp.add_argument("--data", action="store_true", help="also prepare the rows (cached, as train would) and "
                            "check them: a trainable row left, their text through the tokenizer, the warm-up length")
        if verb == "preprocess":
            sp.add_argument("--debug", action="store_true", help="print decoded examples; trained tokens in [[...]]")
            sp.add_argument("--debug-rows", type=int, default=3, help="how many examples --debug prints")
            sp.add_argument("--check-parity", action="store_true",
                            help="check that inference prompt tokens equal the training tokens before the answer")
            sp.add_argument("--parity-rows", type=int, default=8, help="rows sampled per dataset by --check-parity")
        if verb == "evaluate":
            sp.add_argument("--dataset", help="a data file to evaluate on (read with the recipe's first dataset "
                                              "type), instead of the recipe's eval split")
            sp.add_argument("--json", dest="json_out", metavar="OUT", help="write the results as one JSON object to OUT")
        if verb == "infer":
            sp.add_argument("--prompt", help="one prompt; without it, one prompt per stdin line -> JSON lines "
                                             "(on a terminal: type a prompt, Enter; Ctrl-D ends)")
            sp.add_argument("--max-new-tokens", type=int, default=None)
            sp.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
            sp.add_argument("--top-p", type=float, default=1.0)
            sp.add_argument("--seed", type=int, default=None)
            sp.add_argument("--no-stream", action="store_true", help="print the answer at the end, not as it comes")
            sp.add_argument("--gradio", action="store_true", help="serve a chat page instead (needs ftkit[gradio])")
            sp.add_argument("--host", default="127.0.0.1", help="--gradio address (default: this machine only; any "
                                                                "other address is announced, with or without a login)")
            sp.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                            help="--gradio: require this login (or set FTKIT_GRADIO_AUTH=user:password, which other "
                                 "users cannot read in the process list)")
            sp.add_argument("--port", type=int, default=None, help="--gradio port (default: gradio picks 7860+)")
        if verb == "train":
            sp.add_argument("--num_processes", "--num-processes", type=int, default=None,
                            help="run N processes through `accelerate launch` (DDP, or the recipe's deepspeed/fsdp); "
                                 "with --num_machines, the processes of all machines together")
            for flag, kind, help_ in NODE_FLAGS:
                sp.add_argument(f"--{flag}", f"--{flag.replace('_', '-')}", type=kind, default=None, help=help_)
            sp.add_argument("--overwrite", action="store_true",
                            help="write into an output_dir ftkit did not create (its files of the names ftkit writes, "
                                 "README.md, config.json, ..., are replaced; the others stay), or start afresh over "
                                 "the checkpoints of an unfinished run")
            sp.add_argument("--resume-changed-data", action="store_true",
                            help="resume a checkpoint although the data changed since it was written (said in the "
                                 "log; without it that is an error)")
        if verb == "memory":
            sp.add_argument("--num_processes", "--num-processes", type=int, default=1,
                            help="devices the run is spread over (ZeRO / FSDP shard states across them)")
        if verb == "bench":
            sp.add_argument("--steps", type=int, default=None,
                            help="timed training steps per run (bench packing: 6; bench compare: 30)")
            sp.add_argument("--hidden", type=int, default=256, help="hidden size of the Llama twin timed")
            sp.add_argument("--layers", type=int, default=4, help="layers of the Llama twin timed")
            sp.add_argument("--attn", default="sdpa", help="attention: sdpa, eager, flash_attention_2 (GPU)")
            sp.add_argument("--rows", default="2000,20000", help="bench compare: rows per packing case (comma list)")
            sp.add_argument("--seq-lens", default="512,2048,4096", help="bench compare: sequence_len per packing case")
            sp.add_argument("--prep-rows", default="20000", help="bench compare: rows per preprocessing case")
            sp.add_argument("--rounds", type=int, default=3, help="bench compare: interleaved rounds (packing; "
                            "preprocess and training take one fewer)")
            sp.add_argument("--sections", default=None,
                            help="bench compare: which of packing, preprocess, training, axolotl to run (default: "
                                 "all); bench memory: which of estimate, lm-head, allocator, kernels (GPU) (default: estimate,lm-head)")
            sp.add_argument("--axolotl-python", default=None, metavar="PYTHON",
                            help="bench compare: the python of a venv that has Axolotl (its pins differ from "
                                 "ftkit's); default $FTKIT_AXOLOTL_PYTHON, or this one if it imports axolotl")
            sp.add_argument("--sets", default="samples,longtail",
                            help="bench compare: packing length sets (data_samples lengths, a long-tailed set)")
        if verb == "merge-lora":
            sp.add_argument("--output-dir", dest="merge_output_dir", default=None,
                            help="where to save (default: OUTPUT_DIR/merged)")
            sp.add_argument("--overwrite", action="store_true",
                            help="write into a folder ftkit did not create (files of the names a merge writes are "
                                 "replaced, keeping their modes; the others stay)")
        if verb in ("merge-lora", "infer", "evaluate"):
            sp.add_argument("--allow-other-base", action="store_true",
                            help="base_model is a renamed copy of the model the adapter was trained on (its layer "
                                 "shapes are still checked)")
        if verb in ("infer", "evaluate"):
            sp.add_argument("--untrained", action="store_true",
                            help="answer with the untrained base model when output_dir holds no trained model "
                                 "(without it, that is an error: a mistyped output_dir never answers as the base)")
    _notebooks_parser(sub)
    _fetch_parser(sub)
    return p


def _fetch_parser(sub) -> None:
    """`ftkit fetch examples|deepspeed_configs|notebooks|data_samples [--dest DIR] [--force]`."""
    from ftkit.cookbook.fetch import WHAT

    help_ = "copy shipped recipes, DeepSpeed configs, notebooks or data samples out of the installed package"
    sp = sub.add_parser("fetch", help=help_, description=help_ + ". Default destinations mirror the repository ("
                        + ", ".join(f"{w} -> ./{d[2]}/" for w, d in WHAT.items()) + "), so the README's commands work there.")
    sp.add_argument("what", choices=list(WHAT), help="what to copy")
    sp.add_argument("--dest", default=None, help="destination folder (default: see above)")
    sp.add_argument("--force", action="store_true", help="overwrite files that exist with other content")


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
    run.add_argument("--jobs", type=int, default=None,
                     help="notebooks at a time (default: one per core); each kernel gets cores / jobs torch threads")


def _notebooks(args) -> int:
    from ftkit.cookbook import runner

    results = runner.run(args.names, runner.parse_params(args.params), tiny=args.tiny,
                         output_dir=args.output_dir, jobs=args.jobs)
    return 0 if all(r.status == "passed" for r in results) else 1


def _preprocess(recipe, args) -> None:
    from ftkit import data, models
    from ftkit.formats.chat import chat_rows
    from ftkit.train.outputs import check_paths

    check_paths(recipe, ("dataset_prepared_path",))  # a file where the cache goes: an error naming the option
    tok = models.load_tokenizer(recipe)
    prepared = data.prepare(recipe, tok)  # with rl: conversational rows, tokenized by TRL at train time
    print(prepared.summary())
    if args.debug:
        train = prepared.train  # a stream (pretraining_dataset) has no length: its first rows, built now
        rows = train.take(args.debug_rows) if not hasattr(train, "__len__") else train.select(
            range(min(args.debug_rows, len(train))))
        for i, ex in enumerate(rows):
            if chat_rows(recipe):  # a preference / GRPO / reward-model row as the model sees it
                from ftkit.plugins.pairs import show_pair

                print(f"--- example {i} ---\n{show_pair(tok, ex)}")
                continue
            if "seq_lengths" in ex:  # sample_packing: a packed row, one line per example
                from ftkit.plugins.packing import show_packed_row

                print(f"--- packed row {i} ---\n{show_packed_row(ex, tok)}")
                continue
            print(f"--- example {i} ({len(ex['input_ids'])} tokens; trained text in [[...]]) ---")
            print(data.show_mask(ex, tok, color=sys.stdout.isatty()))
    if args.check_parity and chat_rows(recipe):  # TRL renders the prompt with the template inference uses
        print("parity: rl: prompts are the chat template's own rendering, the ids `ftkit infer` sends "
              "(tests/test_preference.py checks TRL's prompt_ids against them)")
    elif args.check_parity:
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
    set_process_env()  # online unless HF_HUB_OFFLINE=1 says otherwise, as transformers is
    die_with_parent()  # a killed ftkit takes its datasets.map workers with it (env.py)
    args, extra = _parser().parse_known_args(argv)
    try:
        return _run(args, extra)
    except FtkitError as e:
        print(f"ftkit: {'stopped' if getattr(e, 'exit_code', 2) == 130 else 'error'}: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # `ftkit options | head`: the reader left; not an error of ours
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - python flushes stdout again at exit
        return 0
    except Exception as e:  # a full disk where no step names it (data cache, logs), or Ctrl-C inside a library
        from ftkit.errors import interrupted, is_disk_full

        if interrupted(e):  # datasets' worker pool turns Ctrl-C into a TimeoutError on its way out
            return _interrupted()
        if not isinstance(e, (OSError, RuntimeError)) or not is_disk_full(e):
            raise
        print(f"ftkit: error: the disk is full ({type(e).__name__}: {str(e).splitlines()[0][:200]}). Fix: free "
              "space (or point output_dir / dataset_prepared_path / HF_HOME at a larger disk) and run again",
              file=sys.stderr)
        return 3


# `ftkit train` flags handed to accelerate's launcher as they are (accelerate passes them to torchrun)
NODE_FLAGS = [("num_machines", int, "machines in the run (run the same command on each, with its --machine_rank)"),
              ("machine_rank", int, "this machine's number, 0 on the machine at --main_process_ip"),
              ("main_process_ip", str, "the address of machine 0, the same on every machine"),
              ("main_process_port", int, "a free port on machine 0 (default 29500)"),
              ("rdzv_backend", str, "torchrun's rendezvous: static (default: ranks follow --machine_rank) or c10d")]
TORCH_VERBS = ("train", "infer", "evaluate", "merge-lora")  # verbs that run a model: their torch threads count


def _torch_threads(to_stderr: bool) -> None:
    """torch threads from the free cores, or FTKIT_THREADS / OMP_NUM_THREADS; one line says which."""
    import torch

    from ftkit.env import torch_threads
    from ftkit.log import log, to_stderr as on_stderr

    try:
        n, why = torch_threads()
    except ValueError as e:
        var, value = e.args
        raise FtkitError(f"{var}={value!r} is not a number of threads", where=var,
                         fix=f"set {var} to a whole number >= 1, or unset it (`unset {var}`) to use the free cores") from None
    torch.set_num_threads(n)
    with on_stderr() if to_stderr else contextlib.nullcontext():  # `infer`: stdout carries only answers
        log.info(f"torch threads: {n} ({why})")


def _interrupted() -> int:
    print("ftkit: interrupted (Ctrl-C): nothing half-written was published (an output folder keeps its earlier model "
          "and intact checkpoints; a half-written data cache is never used)", file=sys.stderr)
    return 130


def _check(args, extra) -> int:
    """`ftkit check`: the option-by-option migration report; exit 0 when the recipe will train."""
    from ftkit.recipe.check import check

    text, problems, checked = check(args.recipe, extra, strict=args.strict)
    print(text)
    if problems:
        raise FtkitError(problems)
    from ftkit.train.preflight import check as preflight  # what train checks before loading weights (docs/preflight.md)

    preflight(checked, data=args.data).raise_problems()  # says what it could not check, and why
    print("ok: the recipe will train")
    return 0


def _run(args, extra) -> int:
    """The verb, once arguments are parsed (errors are main's)."""
    if args.verb == "options":
        from ftkit.recipe import options_reference

        print(options_reference())
        return 0
    if args.verb == "notebooks":
        return _notebooks(args)
    if args.verb == "fetch":
        from ftkit.cookbook.fetch import fetch

        fetch(args.what, args.dest, force=args.force)
        return 0
    if args.verb == "bench" and args.what != "packing":  # these need no recipe
        if args.what == "compare":
            from ftkit.bench import compare

            ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
            compare.run(rows=ints(args.rows), seq_lens=ints(args.seq_lens), prep_rows=ints(args.prep_rows),
                        steps=args.steps or 30, rounds=args.rounds,
                        sections=(args.sections or "packing,preprocess,training,axolotl").split(","),
                        sets=args.sets.split(","), axolotl_python=args.axolotl_python)
        elif args.what == "preprocess":
            from ftkit.bench.preprocess import run as bench_preprocess

            bench_preprocess(args.base_model)
        else:
            from ftkit.bench import memory as memory_bench

            memory_bench.run(sections=(args.sections or "estimate,lm-head").split(","), rounds=args.rounds,
                             steps=args.steps or 8)
        return 0
    if args.verb == "bench" and not args.recipe:
        raise FtkitError("bench packing needs a recipe", where="command line",
                         fix="ftkit bench packing recipes/quickstart.yml")
    if args.verb == "check":
        return _check(args, extra)
    from ftkit.recipe import load_recipe

    recipe = load_recipe(args.recipe, extra)
    launcher = args.verb == "train" and bool(args.num_processes or args.num_machines)
    if args.verb in ("train", "preprocess") and not launcher and os.environ.get("RANK", "0") == "0":
        from ftkit.log import log  # said once: by the process itself, or by rank 0 of those a launcher starts

        log.info(recipe.report.summary())  # "42 options used, 3 aliases, 2 speed-only ignored: ..."
    if args.verb in TORCH_VERBS and not launcher:  # the launcher's children choose
        _torch_threads(to_stderr=args.verb == "infer")
    if launcher:
        from ftkit.plugins import distributed

        distributed.launch(args.recipe, extra + ["--overwrite"] * args.overwrite
                           + ["--resume-changed-data"] * args.resume_changed_data, args.num_processes,
                           {flag: getattr(args, flag) for flag, _, _ in NODE_FLAGS})
    elif args.verb == "preprocess":
        _preprocess(recipe, args)
    elif args.verb == "train":
        from ftkit import train
        from ftkit.errors import Problem
        from ftkit.train.outputs import RunFailed

        result = train.run(recipe, overwrite=args.overwrite, resume_changed_data=args.resume_changed_data)
        if result.diverged:  # exit 3: the run ended without a model
            what, _, fix = result.runtime["stop_reason"].partition(". Fix: ")
            raise RunFailed(Problem(f"{what}; no model was saved (the loss curve and metrics are in {result.saved_to}; "
                                    f"{recipe.output_dir} keeps what it held before)", recipe.source,
                                    result.runtime.get("stop_key", "loss_watchdog_threshold"), fix=fix or None))
    elif args.verb == "infer":
        from ftkit import infer

        if args.gradio:
            from ftkit.infer import ui

            ui.launch(recipe, args.host, args.port, auth=ui.parse_auth(args.auth), max_new_tokens=args.max_new_tokens,
                      temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                      load=dict(untrained=args.untrained, allow_other_base=args.allow_other_base))
            return 0
        infer.run(recipe, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                  top_p=args.top_p, seed=args.seed, stream=not args.no_stream,
                  load=dict(untrained=args.untrained, allow_other_base=args.allow_other_base))
    elif args.verb == "evaluate":
        from ftkit.cookbook import evaluate

        evaluate.run(recipe, args.dataset, args.json_out,
                     load=dict(untrained=args.untrained, allow_other_base=args.allow_other_base))
    elif args.verb == "memory":
        from ftkit.bench import estimate as memory

        print(memory.run(recipe, args.num_processes))
    elif args.verb == "merge-lora":
        from ftkit.models import merge

        merge.run(recipe, args.merge_output_dir, overwrite=args.overwrite, allow_other_base=args.allow_other_base)
    elif args.verb == "bench" and args.what == "packing":
        from ftkit.bench import packing as packing_bench

        packing_bench.run(recipe, steps=args.steps, hidden=args.hidden, layers=args.layers, attn=args.attn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
