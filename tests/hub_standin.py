"""A stand-in for the Hugging Face hub on 127.0.0.1, so tests download "hub" models without a network.

`HF_ENDPOINT=<standin.url>` sends huggingface_hub (and through it transformers, `hf download`) here. It serves
just the calls those libraries make to fetch a model, as the hub answers them (huggingface_hub 2.x, read in
file_download.py, _snapshot_download.py and utils/_http.py):

- `HEAD|GET /{org}/{name}/resolve/{revision}/{file}`: the file, with `ETag`, `X-Repo-Commit` and `Content-Length`
  (a missing file: 404 `X-Error-Code: EntryNotFound`).
- `GET /api/models/{org}/{name}/revision/{revision}`: the repo's commit sha and files (snapshot_download).
- `GET /api/models/{org}/{name}/tree/{revision}`: the file list (snapshot_download).
- a gated repo answers everything with 401 (no token) or 403 (a token without access), `X-Error-Code: GatedRepo`;
  an unknown repo 404, `X-Error-Code: RepoNotFound`.

Bounded: it serves at most `lifetime_s` seconds (then shuts itself down, even if a test forgets), records every
request (`requests`) and listens on loopback only.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class HubStandin:
    """`with HubStandin({"some-org/some-model": folder}, gated={"org/gated"}) as hub: ... hub.url ...`"""

    def __init__(self, models: dict[str, Path], gated: set[str] = frozenset(), lifetime_s: float = 600):
        self.models = {repo: Path(folder) for repo, folder in models.items()}
        self.gated = set(gated)
        self.lifetime_s = lifetime_s
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()  # 40 hex digits, stable per repo: a commit sha

    def files(self, repo: str) -> dict[str, Path]:
        root = self.models[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def __enter__(self) -> HubStandin:
        standin = self

        class Handler(_Handler):
            hub = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._timer = threading.Timer(self.lifetime_s, self._server.shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the test reads hub.requests
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path))
        parts = path.strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        if parts[0] == "api" and not api:  # datasets, spaces, telemetry, ...: not served
            return self._error(404, "RepoNotFound", "not served by the stand-in", body)
        repo = "/".join(parts[2:4] if api else parts[:2])
        if repo in self.hub.gated:
            code = 403 if self.headers.get("Authorization") else 401
            return self._error(code, "GatedRepo", f"Access to model {repo} is restricted. You must have access to "
                                                  "it and be authenticated to access it. Please log in.", body)
        if repo not in self.hub.models:
            return self._error(404, "RepoNotFound", "Repository not found", body)
        commit, files = self.hub.commit(repo), self.hub.files(repo)
        if api and parts[4:5] in ([], ["revision"]):  # model_info (without or with a revision)
            return self._json({"id": repo, "modelId": repo, "sha": commit, "private": False, "gated": False,
                               "siblings": [{"rfilename": f} for f in files]}, body)
        if api and parts[4:5] == ["tree"]:  # /tree/{revision}[/{folder}]
            folder = "/".join(parts[6:])
            listed = [{"type": "file", "path": f, "size": p.stat().st_size, "oid": _sha(p, "sha1")}
                      for f, p in files.items() if not folder or f.startswith(folder + "/")]
            if folder and not listed:
                return self._error(404, "EntryNotFound", f"{folder} does not exist in {repo}", body, commit)
            return self._json(listed, body)
        name = "/".join(parts[4:])
        if parts[2:3] != ["resolve"] or name not in files:
            return self._error(404, "EntryNotFound", f"{name} does not exist in {repo}", body, commit)
        data = files[name].read_bytes()
        self._send(200, data, body, {"ETag": f'"{_sha(files[name], "sha256")}"', "X-Repo-Commit": commit,
                                     "Content-Type": "application/octet-stream"})

    def _json(self, obj, body: bool) -> None:
        self._send(200, json.dumps(obj).encode(), body, {"Content-Type": "application/json"})

    def _error(self, code: int, error_code: str, message: str, body: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Code": error_code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(code, json.dumps({"error": message}).encode(), body, headers)

    def _send(self, code: int, data: bytes, body: bool, headers: dict) -> None:
        self.send_response(code)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _sha(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def online_env(hub_url: str, hf_home: Path, **extra: str) -> dict:
    """The environment of a user who never set anything: the offline switches unset, a fresh hub cache (HF_HOME),
    and the hub at `hub_url` (the stand-in). This checkout's ftkit is imported (PYTHONPATH)."""
    import os
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                            "HF_DATASETS_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE")}
    return {**env, "HF_ENDPOINT": hub_url, "HF_HOME": str(hf_home), "PYTHONPATH": str(root), "TQDM_DISABLE": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", **extra}


def workspace(dest: Path) -> Path:
    """A folder laid out as the repository's root for the README's commands (recipes/, data_samples/, notebooks/,
    Makefile), so their outputs land in a temp folder, not in the checkout."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    for name in ("recipes", "data_samples", "notebooks"):
        shutil.copytree(root / name, dest / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy2(root / "Makefile", dest / "Makefile")
    return dest
