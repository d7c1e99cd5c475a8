"""Functions a recipe names by import path, as Axolotl names them: `rewards.correct_sum` is `correct_sum` in
rewards.py (or rewards/__init__.py). GRPO reward functions (`trl.reward_funcs`) and prompt transforms
(`datasets[].type`) are found this way.

The module is looked up in the recipe's folder first, then the working directory (Axolotl imports from the
working directory only, so a recipe run from elsewhere finds its rewards.py here too). Two recipes in different
folders may each have a rewards.py: the one next to the recipe being run is the one imported.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.recipe import Recipe


def search_dirs(recipe: Recipe) -> list[str]:
    """The recipe's folder, then the working directory."""
    dirs = [str(Path(recipe.source).resolve().parent)] if recipe.source else []
    return list(dict.fromkeys([*dirs, str(Path.cwd())]))


def module_file(module: str, dirs: list[str]) -> Path | None:
    """The file `module` (dotted) resolves to in the first of `dirs` that holds it."""
    rel = Path(*module.split("."))
    for d in dirs:
        for candidate in (Path(d) / rel.with_suffix(".py"), Path(d) / rel / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _import(module: str, dirs: list[str]):
    """Import `module` with `dirs` searched first; a module of that name imported from another file before (the
    rewards.py of another recipe) is imported again from the file found now."""
    wanted = module_file(module, dirs)
    cached = sys.modules.get(module)
    if wanted and cached is not None and Path(getattr(cached, "__file__", "") or "").resolve() != wanted:
        for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            del sys.modules[name]
    sys.path[:0] = dirs
    try:
        importlib.invalidate_caches()
        return importlib.import_module(module)
    finally:
        del sys.path[:len(dirs)]


def load_function(dotted: str, recipe: Recipe, key: str, what: str, example: str):
    """The function a dotted path names; an error naming the recipe file, the key and the fix when the path does
    not import, the module lacks the name, or the name is not a function."""
    module, _, name = dotted.rpartition(".")
    dirs = search_dirs(recipe)
    where = f" (looked in {', '.join(dirs)})"
    fix = f"define {example} in {module or 'MODULE'}.py next to the recipe, and name it {module or 'MODULE'}.{name}"
    if not module:
        raise FtkitError(f"{what} {dotted!r} is not an import path (MODULE.FUNCTION)", file=recipe.source, where=key,
                         fix=fix)
    try:
        mod = _import(module, dirs)
    except ModuleNotFoundError as e:
        raise FtkitError(f"{what} {dotted!r} does not import: no module named {e.name!r}{where}", file=recipe.source,
                         where=key, fix=fix) from None
    except Exception as e:  # the user's module raised while importing: say which and why
        raise FtkitError(f"{what} {dotted!r}: importing {module} failed: {type(e).__name__}: {e}", file=recipe.source,
                         where=key, fix=f"fix {module_file(module, dirs) or module}") from e
    fn = getattr(mod, name, None)
    if not callable(fn):
        found = "has no" if fn is None else "has a non-function"
        raise FtkitError(f"{what} {dotted!r}: {mod.__file__} {found} {name!r}", file=recipe.source, where=key, fix=fix)
    return fn
