"""`ftkit fetch WHAT [--dest DIR]`: copy what ftkit ships out of the installed package (Axolotl's `axolotl fetch`).

    ftkit fetch examples            -> ./recipes/           every recipe, DeepSpeed configs included
    ftkit fetch deepspeed_configs   -> ./recipes/deepspeed/ the ZeRO-1/2/3 JSON files
    ftkit fetch notebooks           -> ./notebooks/
    ftkit fetch data_samples        -> ./data_samples/      the datasets the recipes and notebooks train on

The default destinations mirror the repository, so the README's commands (`ftkit train
recipes/quickstart.yml`) work in the folder fetched into. A file already there with other content is
never overwritten silently: it is an error naming the files, unless `force`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ftkit.errors import FtkitError, Problem
from ftkit.log import log
from ftkit.resources import root, shipped_files

# what -> (shipped folder, sub-folder of it, default destination)
WHAT = {
    "examples": ("recipes", "", "recipes"),
    "deepspeed_configs": ("recipes", "deepspeed", "recipes/deepspeed"),
    "notebooks": ("notebooks", "", "notebooks"),
    "data_samples": ("data_samples", "", "data_samples"),
}


def fetch(what: str, dest: str | Path | None = None, force: bool = False) -> list[Path]:
    """Copy the shipped files of `what` into `dest` (default: WHAT's folder, relative to the working directory);
    returns the files written. Identical files already there are left alone."""
    if what not in WHAT:
        raise FtkitError(f"nothing called {what!r} to fetch", where="WHAT", fix=f"choose one of {', '.join(WHAT)}")
    folder, sub, default = WHAT[what]
    source = root() / folder / sub
    files = [p.relative_to(Path(folder) / sub) for p in shipped_files(folder) if source in (root() / p).parents]
    target = Path(dest or default)
    clashes = [f for f in files if (target / f).is_file() and (target / f).read_bytes() != (source / f).read_bytes()]
    if clashes and not force:
        raise FtkitError([Problem(f"{target / f} exists with other content", where="--dest") for f in clashes[:5]] +
                         [Problem(f"{len(clashes)} file(s) would be overwritten", where="--dest",
                                  fix="choose another --dest, or pass --force to overwrite them")])
    written = []
    for f in files:
        if (target / f).is_file() and f not in clashes:
            continue  # already there, identical
        (target / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / f, target / f)
        written.append(target / f)
    log.info(f"fetch {what}: {len(written)} file(s) copied from {source} to {target}"
             + (f" ({len(files) - len(written)} already there)" if len(files) > len(written) else ""))
    return written
