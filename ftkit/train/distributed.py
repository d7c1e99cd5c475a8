"""More than one process: DeepSpeed / FSDP options onto TrainingArguments, and `--num_processes` via accelerate.

ftkit never launches processes itself: `accelerate launch -m ftkit train RECIPE` (or `ftkit train RECIPE
--num_processes 2`, which calls accelerate's own launcher) starts one process per device, and the HF
Trainer inside each one does DDP, DeepSpeed or FSDP as TrainingArguments say.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ftkit.env import world_size  # noqa: F401  (re-exported: callers ask distributed.world_size())
from ftkit.errors import ConfigError, FtkitError, Problem
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.resources import shipped

SHIPPED = shipped("recipes/deepspeed")
FSDP_OPTIONS = {"full_shard", "shard_grad_op", "no_shard", "hybrid_shard", "hybrid_shard_zero2", "offload", "auto_wrap"}
# keys TrainingArguments reads from fsdp_config (an `fsdp_` prefix is accepted and stripped, as in Axolotl)
FSDP_CONFIG_KEYS = {"version", "reshard_after_forward", "cpu_offload", "activation_checkpointing",
                    "cpu_ram_efficient_loading", "state_dict_type", "auto_wrap_policy", "transformer_layer_cls_to_wrap",
                    "min_num_params", "backward_prefetch", "forward_prefetch", "use_orig_params", "sync_module_states",
                    "limit_all_gathers", "xla", "xla_fsdp_settings", "xla_fsdp_grad_ckpt"}
FSDP_RENAMES = {"offload_params": "cpu_offload"}  # Axolotl's name -> TrainingArguments'


def deepspeed_path(recipe: Recipe) -> str:
    """The recipe's DeepSpeed JSON, found as given, next to the recipe, or among the shipped ones; validated."""
    given = Path(recipe.deepspeed)
    beside = Path(recipe.source).parent / given if recipe.source else given  # an absolute path stays as given
    path = next((c for c in (given, beside, SHIPPED / given.name) if c.is_file()), None)
    stage = re.match(r"zero(\d)", given.name)
    if path is None and stage and (SHIPPED / f"zero{stage.group(1)}.json").is_file():
        path = SHIPPED / f"zero{stage.group(1)}.json"  # Axolotl's deepspeed_configs/zero3_bf16.json and friends
        log.info(f"deepspeed: {recipe.deepspeed} is one of Axolotl's files; using ftkit's {path.name} (the same ZeRO "
                 "stage; its `auto` values come from the recipe, offload settings only move memory)")
    if path is None:
        raise ConfigError(Problem(f"DeepSpeed config {recipe.deepspeed!r} not found", recipe.source, "deepspeed",
                                  fix="point it at a JSON file; shipped: recipes/deepspeed/zero1.json, zero2.json, "
                                      "zero3.json"))
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(Problem(f"{path} is not valid JSON ({e.msg}, line {e.lineno})", recipe.source, "deepspeed",
                                  fix="fix the JSON or start from recipes/deepspeed/zero2.json")) from None
    stage = (cfg.get("zero_optimization") or {}).get("stage")
    if stage not in (0, 1, 2, 3):
        raise ConfigError(Problem(f"{path} has no zero_optimization.stage 0-3 (got {stage!r})", recipe.source,
                                  "deepspeed", fix='add "zero_optimization": {"stage": 2}'))
    return str(path)


def fsdp_kwargs(recipe: Recipe) -> dict:
    """Axolotl's `fsdp: [full_shard, auto_wrap]` + `fsdp_config: {...}` as TrainingArguments(fsdp=True, fsdp_config).

    transformers 5 deprecates the list form, so the options become fsdp_config entries here, as transformers
    itself translates them: full_shard -> reshard_after_forward true (FSDP2), shard_grad_op -> false,
    offload -> cpu_offload; auto_wrap is the default policy; the hybrid strategies need version 1.
    """
    options = recipe.fsdp.split() if isinstance(recipe.fsdp, str) else list(recipe.fsdp)
    problems = [Problem(f"unknown FSDP option {o!r}", recipe.source, "fsdp", fix=f"use some of {sorted(FSDP_OPTIONS)}")
                for o in options if o not in FSDP_OPTIONS]
    config = {}
    for key, value in (recipe.fsdp_config or {}).items():
        name = key.removeprefix("fsdp_")
        if name in FSDP_RENAMES:
            log.info(f"fsdp_config.{key} -> {FSDP_RENAMES[name]} (TrainingArguments' name)")
            name = FSDP_RENAMES[name]
        if name not in FSDP_CONFIG_KEYS:
            problems.append(Problem("unknown FSDP setting", recipe.source, f"fsdp_config.{key}",
                                    fix=f"use one of {sorted(FSDP_CONFIG_KEYS)} (an fsdp_ prefix is optional)"))
        config[name] = value
    version = int(config.get("version", 2))
    for o in options:
        if version == 2 and o in ("full_shard", "shard_grad_op"):
            config.setdefault("reshard_after_forward", o == "full_shard")
        elif version == 1 and o not in ("offload", "auto_wrap"):
            config.setdefault("reshard_after_forward", o)  # FSDP1 takes the strategy name
        elif o == "offload":
            config.setdefault("cpu_offload", True)
        elif o != "auto_wrap":
            problems.append(Problem(f"fsdp option {o!r} needs FSDP1", recipe.source, "fsdp",
                                    fix="set fsdp_config.version: 1, or use full_shard / shard_grad_op"))
    if problems:
        raise ConfigError(problems)
    return {"fsdp": True, "fsdp_config": config}


def _skip_shm_compile_on_cpu() -> None:
    """DeepSpeed on CPU compiles a shared-memory allreduce helper at first init (60-80 s on 2 cores).

    gloo does the same collectives without it, so mark the op unavailable: DeepSpeed then uses plain
    torch.distributed (its `__compatible_ops__` dict is cached per process and documented as editable).
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    log.info("DeepSpeed on CPU: gloo collectives, shm helper not compiled (FTKIT_DEEPSPEED_SHM=1 builds it)")


_WORLD_OF_ONE: dict[str, str] = {}  # what _single_process_env set, taken back by forget_single_process_env


def forget_single_process_env() -> None:
    """Take back the world of one: a subprocess started later (`ftkit train` from a notebook or a test) would read
    RANK/WORLD_SIZE and try to listen on MASTER_PORT, which this process's group holds."""
    for key, value in list(_WORLD_OF_ONE.items()):
        if os.environ.get(key) == value:
            del os.environ[key]
        del _WORLD_OF_ONE[key]


def _single_process_env() -> None:
    """DeepSpeed and FSDP need a process group even for one process; without a launcher, describe a world
    of one (otherwise DeepSpeed falls back to MPI discovery and fails with an mpi4py ImportError)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        if key not in os.environ:
            os.environ[key] = _WORLD_OF_ONE[key] = value
    log.info(f"deepspeed/fsdp without a launcher: running as a single process (port {port}); "
             "use --num_processes N or `accelerate launch` for more")


def engine_kwargs(recipe: Recipe) -> dict:
    """TrainingArguments for the recipe's engine: DeepSpeed, FSDP, or plain DDP (nothing to add)."""
    import torch

    cuda = torch.cuda.is_available()
    out = {"ddp_backend": "gloo"} if world_size() > 1 and not cuda else {}  # CPU processes: gloo is the only backend
    if recipe.deepspeed:
        out["deepspeed"] = deepspeed_path(recipe)
        if not cuda and os.environ.get("FTKIT_DEEPSPEED_SHM") != "1":
            _skip_shm_compile_on_cpu()
    if recipe.fsdp:
        out.update(fsdp_kwargs(recipe))
        if not cuda:
            log.warning("fsdp on CPU: accelerate keeps FSDP for GPU processes only, so this run is plain data "
                        "parallel (every process holds the whole model); the same recipe shards on GPUs")
    if recipe.deepspeed or recipe.fsdp:
        _single_process_env()
    return out


def launch(recipe_file: str, overrides: list[str], num_processes: int | None, nodes: dict | None = None) -> None:
    """`ftkit train RECIPE --num_processes N` = `accelerate launch --num_processes N -m ftkit train RECIPE`
    (`overrides` carries the other arguments too, e.g. --overwrite).

    `nodes` holds accelerate's multi-node flags (num_machines, machine_rank, main_process_ip/port, rdzv_backend),
    passed through as given: accelerate hands them to torchrun. As in accelerate, num_processes counts the
    processes of all machines; left out, it is one per device on each machine.
    """
    import torch
    from accelerate.commands.launch import launch_command, launch_command_parser

    nodes = {k: v for k, v in (nodes or {}).items() if v is not None}
    machines = nodes.get("num_machines", 1)
    if num_processes is None:
        num_processes = machines * max(1, torch.cuda.device_count())
    if machines > 1:
        _check_nodes(nodes, num_processes)
    argv = ["--num_processes", str(num_processes), "--num_machines", str(machines), "--mixed_precision", "no",
            "--dynamo_backend", "no"]
    argv += [word for key, value in nodes.items() if key != "num_machines" for word in (f"--{key}", str(value))]
    if num_processes > 1:
        argv.append("--multi_gpu")  # accelerate's torchrun path; on CPU each process gets gloo (--cpu needs MPI)
    elif not torch.cuda.is_available():
        argv.append("--cpu")
    argv += ["-m", "ftkit", "train", recipe_file, *overrides]
    try:
        launch_command(launch_command_parser().parse_args(argv))
    except ConnectionError:  # accelerate's check on machine 0, before anything starts
        raise FtkitError(f"port {nodes.get('main_process_port', 29500)} is in use on this machine (machine 0)",
                         where="--main_process_port", fix="choose a free port, the same on every machine") from None


def _check_nodes(nodes: dict, num_processes: int) -> None:
    """What torchrun would otherwise fail on later, or wait forever for, said before anything starts."""
    machines, where = nodes["num_machines"], "command line"
    problems = []
    if nodes.get("machine_rank") is None or not 0 <= nodes["machine_rank"] < machines:
        problems.append(Problem(f"--machine_rank must be 0..{machines - 1} on each of the {machines} machines",
                                where, "--machine_rank", fix="0 on the machine at --main_process_ip, 1.. on the others"))
    if not nodes.get("main_process_ip"):
        problems.append(Problem("every machine needs the address of machine 0", where, "--main_process_ip",
                                fix="--main_process_ip=ADDRESS_OF_MACHINE_0 (the same on all machines)"))
    if num_processes % machines:
        problems.append(Problem(f"--num_processes {num_processes} (all machines together) is not a multiple of "
                                f"--num_machines {machines}", where, "--num_processes",
                                fix=f"use {machines} x the devices of one machine"))
    if problems:
        raise FtkitError(problems)
