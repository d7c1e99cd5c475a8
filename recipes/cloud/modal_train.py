"""ftkit on Modal: `ftkit train RECIPE` in a Modal container with GPUS GPUs (accelerate starts one process per
GPU), the run's output_dir kept in the Modal volume `ftkit-outputs`.

    modal run recipes/cloud/modal_train.py --recipe recipes/llama/lora.yml [--args "--max_steps=100"]
    modal volume get ftkit-outputs llama-lora ./outputs/llama-lora      # the trained model (its output_dir)

Run it from the root of an ftkit checkout: the checkout (ftkit, the recipe, its data files) is copied into the
image. Set the GPU with FTKIT_MODAL_GPU (default H100) and FTKIT_MODAL_GPUS (default 1) in the shell that runs
`modal run`; gated models: `modal secret create huggingface HF_TOKEN=...` and FTKIT_MODAL_SECRET=huggingface.
Recipes write to ./outputs/..., which is the volume in the container.
"""
import os
import shlex
import subprocess

import modal

GPU = os.environ.get("FTKIT_MODAL_GPU", "H100")
GPUS = int(os.environ.get("FTKIT_MODAL_GPUS", "1"))
SECRET = os.environ.get("FTKIT_MODAL_SECRET")
WORKDIR = "/ftkit"

image = (modal.Image.debian_slim(python_version="3.11")
         .add_local_dir(".", WORKDIR, copy=True, ignore=[".git", ".venv", "outputs", "**/__pycache__"])
         .run_commands(f"pip install -e '{WORKDIR}[deepspeed]'"))
outputs = modal.Volume.from_name("ftkit-outputs", create_if_missing=True)
app = modal.App("ftkit", image=image)


def train_command(recipe: str, args: str = "", gpus: int = GPUS) -> list[str]:
    """The command the container runs: the recipe, one process per GPU, then the overrides."""
    return ["ftkit", "train", recipe, "--num_processes", str(gpus), *shlex.split(args)]


@app.function(gpu=f"{GPU}:{GPUS}", volumes={f"{WORKDIR}/outputs": outputs}, timeout=24 * 3600,
              secrets=[modal.Secret.from_name(SECRET)] if SECRET else [])
def train(recipe: str, args: str = "") -> None:
    try:
        subprocess.run(train_command(recipe, args), cwd=WORKDIR, check=True)
    finally:
        outputs.commit()  # what was written, checkpoints included, also when the run fails


@app.local_entrypoint()
def main(recipe: str, args: str = "") -> None:
    train.remote(recipe, args)
