"""`ftkit infer RECIPE --gradio`: a chat page over the trained model (gradio, an optional extra).

Each message is prompted exactly as `ftkit infer` does (the training template) and streamed back token by
token. A chat-template recipe keeps the conversation (earlier turns are sent along, rendered by the
template); an alpaca-style format holds one instruction, so each message is answered on its own, and the
page says so. Bound to 127.0.0.1 unless --host says otherwise: a model server on all interfaces is a
choice the user makes, never a default, and it is announced; `--auth user:password` (or FTKIT_GRADIO_AUTH)
puts gradio's login in front of the page.
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

    from ftkit.formats.prompt import Prompt
    from ftkit.infer.generate import generate

    served = Prompt(recipe, tokenizer)  # the saved folder's prompt, built once for the session
    turns = served.keeps_turns

    def respond(message, history):
        # a chat template holds the conversation; an alpaca-style prompt holds one instruction (see turns_note)
        prompt = [*(_message(m) for m in history), {"role": "user", "content": message}] if turns else message
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = Thread(target=generate, args=(model, tokenizer, recipe, [prompt]),
                        kwargs=dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                    seed=seed, streamer=streamer, prompt=served), daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text.strip()
        worker.join()

    return respond


def _message(m: dict) -> dict:
    """A gradio history entry as {role, content} text (gradio may hold content as a list of parts)."""
    content = m["content"]
    if not isinstance(content, str):
        parts = content if isinstance(content, list) else [content]
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts)
    return {"role": m["role"], "content": content}


def turns_note(recipe: Recipe, tokenizer) -> str:
    """What the page tells the user about earlier turns."""
    from ftkit.infer.generate import keeps_turns

    if keeps_turns(recipe, tokenizer):
        return "Earlier turns are sent with each message: the chat template this model was trained with holds the conversation."
    kind = recipe.datasets[0].type if isinstance(recipe.datasets[0].type, str) else "custom"
    return (f"Each message is answered on its own: this model was trained on the {kind} prompt, which holds one "
            "instruction, so earlier turns are not sent to it.")


def build_app(model, tokenizer, recipe: Recipe, **sampling):
    """The gradio Blocks app (not launched), titled with the recipe it serves."""
    gr = _gradio()
    served = (f"base {recipe.base_model}; adapter {recipe.lora_model_dir or recipe.output_dir}" if recipe.adapter
              else f"model {recipe.output_dir}")
    return gr.ChatInterface(chat_fn(model, tokenizer, recipe, **sampling), api_name="chat",
                            title=f"ftkit: {recipe.source or recipe.base_model}",
                            description=f"{served}. {turns_note(recipe, tokenizer)}")


AUTH_ENV = "FTKIT_GRADIO_AUTH"


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """`user:password` (from --auth, else $FTKIT_GRADIO_AUTH) -> gradio's auth tuple; None when neither is set."""
    import os

    given = text if text is not None else os.environ.get(AUTH_ENV)
    if not given:
        return None
    user, sep, password = given.partition(":")
    if not (sep and user and password):
        raise FtkitError("a login must be written user:password", where="--auth" if text is not None else AUTH_ENV,
                         fix="e.g. --auth alice:long-secret, or export FTKIT_GRADIO_AUTH=alice:long-secret")
    return user, password


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def serve(app, host: str, port: int | None, auth: tuple[str, str] | None = None, block: bool = True):
    """app.launch on host:port; any address other than loopback is announced, with whether a login guards it."""
    from ftkit.log import log

    if not is_loopback(host):
        if auth:
            log.warning(f"serving on {host}: reachable from other machines; login required (user {auth[0]!r})")
        else:
            log.warning(f"serving on {host} WITHOUT A LOGIN: anyone who can reach this machine can use the model (and "
                        f"its compute). Add --auth user:password (or {AUTH_ENV}=user:password), or serve on 127.0.0.1")
    try:
        app.launch(server_name=host, server_port=port, share=False, auth=auth, prevent_thread_lock=not block,
                   quiet=not block)
    except OSError as e:  # gradio: "Cannot find empty port in range: 7860-7860. ..."; the OS: cannot assign address
        taken = "empty port" in str(e)
        raise FtkitError(f"cannot serve on {host}:{port or '7860+'}: "
                         + ("the port is in use by another program" if taken else str(e).splitlines()[0][:200]),
                         where="--port" if taken else "--host",
                         fix="pass another --port (or stop the program using it)" if taken else
                         "use an address of this machine, e.g. --host 127.0.0.1") from None
    return app


def launch(recipe: Recipe, host: str = "127.0.0.1", port: int | None = None, block: bool = True,
           auth: tuple[str, str] | None = None, load: dict | None = None, **sampling):
    """Load the trained model and serve the chat page; returns the app (block=False: keeps running).
    `load`: load_trained's untrained / allow_other_base."""
    from ftkit.infer.generate import refuse_reward_model
    from ftkit.models.trained import load_trained

    refuse_reward_model(recipe)
    model, tok = load_trained(recipe, **(load or {}))
    return serve(build_app(model, tok, recipe, **sampling), host, port, auth, block)
