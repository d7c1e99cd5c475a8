"""Inference with the training prompt: generation, the `ftkit infer` verb and the gradio chat page."""
from ftkit.infer.generate import generate, prompt_ids, run, stop_token_ids

__all__ = ["generate", "prompt_ids", "run", "stop_token_ids"]
