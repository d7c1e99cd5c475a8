"""The gradio chat page in a real headless browser: it says how it treats earlier turns, and answers a message
typed into it with the model's own text (see tests/browser.py for the browser set-up; skips without one)."""
from __future__ import annotations

import socket

from browser import page, screenshot_path
from test_adapters import run_variant


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gradio_chat_page_in_a_browser(tmp_path_factory, tmp_path):
    from ftkit.infer import ui

    _, recipe, _ = run_variant("lora", tmp_path_factory)
    with page() as browser:  # skips here when no browser is installed, before the server starts
        port = _free_port()
        app = ui.launch(recipe, port=port, block=False, max_new_tokens=8, temperature=1.0, seed=0)
        try:
            browser.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            browser.get_by_role("textbox").first.wait_for(timeout=60_000)
            browser.get_by_text("Each message is answered on its own").first.wait_for(timeout=30_000)
            body = browser.inner_text("body")
            assert "Each message is answered on its own" in body and "alpaca prompt" in body, body[:1000]
            box = browser.get_by_role("textbox").first
            box.fill("What is the capital of Spain?")
            box.press("Enter")
            bot = browser.locator('[data-testid="bot"]').last
            bot.wait_for(timeout=60_000)
            browser.wait_for_function(
                "() => { const b = document.querySelectorAll('[data-testid=\"bot\"]');"
                " return b.length && b[b.length - 1].innerText.trim().length > 0; }", timeout=60_000)
            browser.wait_for_timeout(500)  # the stream's last tokens
            assert bot.inner_text().strip()
            assert "What is the capital of Spain?" in browser.locator('[data-testid="user"]').last.inner_text()
            browser.screenshot(path=str(screenshot_path(tmp_path, "gradio_chat.png")), full_page=True)
        finally:
            app.close()
