"""`ftkit infer RECIPE --gradio`: a chat page over the trained model (gradio, an optional extra).

Each message is prompted exactly as `ftkit infer` does (infer.prompt_ids, the training template) and
streamed back token by token. Bound to 127.0.0.1 unless --host says otherwise: a model server on all
interfaces is a choice the user makes, never a default.
"""
from __future__ import annotations

from ftkit.errors import FtkitError
from ftkit.recipe import Recipe


def _gradio():
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry from a local tool
    try:
        import gradio
    except ImportError:
        raise FtkitError("the chat UI needs gradio, which is not installed", where="--gradio",
                         fix='pip install "ftkit[gradio]" (or drop --gradio for the terminal)') from None
    return gradio


def chat_fn(model, tokenizer, recipe: Recipe, max_new_tokens=None, temperature=0.0, top_p=1.0, seed=None):
    """gradio ChatInterface callback: (message, history) -> growing answer text."""
    from threading import Thread

    from transformers import TextIteratorStreamer

    from ftkit.infer.generate import generate

    def respond(message, history):
        # the recipe's template is single-turn (alpaca-style): each message is answered on its own
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = Thread(target=generate, args=(model, tokenizer, recipe, [message]),
                        kwargs=dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    seed=seed, streamer=streamer), daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text.strip()
        worker.join()

    return respond


def build_app(model, tokenizer, recipe: Recipe, **sampling):
    """The gradio Blocks app (not launched), titled with the recipe it serves."""
    gr = _gradio()
    return gr.ChatInterface(chat_fn(model, tokenizer, recipe, **sampling), api_name="chat",
                            title=f"ftkit: {recipe.source or recipe.base_model}",
                            description=f"base {recipe.base_model}; adapter {recipe.lora_model_dir or recipe.output_dir}"
                            if recipe.adapter else f"model {recipe.output_dir}")


def launch(recipe: Recipe, host: str = "127.0.0.1", port: int | None = None, block: bool = True, **sampling):
    """Load the trained model and serve the chat page; returns the app (block=False: keeps running)."""
    from ftkit.models.trained import load_trained

    model, tok = load_trained(recipe)
    app = build_app(model, tok, recipe, **sampling)
    app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, quiet=not block)
    return app
