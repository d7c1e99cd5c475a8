"""The package's shape is enforced: layers import downward only (import-linter), and no module import cycles."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_contract_holds():
    """pyproject.toml's [tool.importlinter] layers: cli > cookbook/bench > train > infer > models > data > ..."""
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 0 and "1 kept, 0 broken" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return out


def test_no_import_cycles_between_modules():
    import grimp

    assert _cycles(grimp.build_graph("ftkit")) == []


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a graph with a -> b -> a is reported."""
    import grimp

    graph = grimp.ImportGraph()
    for m in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(m)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_plugins_are_reached_only_through_the_seam():
    """ftkit/hooks.py names each plug-in; each exists and says when it applies. The core never imports one
    (the layers contract above puts ftkit.plugins over ftkit.train)."""
    import importlib

    from ftkit import hooks

    on_disk = {f"ftkit.plugins.{p.stem}" for p in (ROOT / "ftkit" / "plugins").glob("*.py") if p.stem != "__init__"}
    assert set(hooks.PLUGINS) == on_disk, "list every plug-in module in ftkit/hooks.py PLUGINS, and only those"
    for name in hooks.PLUGINS:
        module = importlib.import_module(name)
        assert callable(getattr(module, "applies", None)), f"{name} needs applies(recipe)"
    defined = {h for name in hooks.PLUGINS for h in hooks.HOOKS if callable(getattr(importlib.import_module(name), h,
                                                                                       None))}
    assert defined == set(hooks.HOOKS), f"hooks no plug-in defines (drop them from HOOKS): {set(hooks.HOOKS) - defined}"
