"""Row order after mixing: Axolotl shuffles the tokenized rows of all datasets before the length filter.

ftkit tokenizes and filters each dataset on its own (so drops are counted per dataset), then puts the kept
rows in the order they would have had if the shuffle had come first: each tokenized row carries its index
(`_row`), the seeded permutation is drawn over all tokenized rows (as datasets' own shuffle draws it), and the
kept rows are sorted by their place in it. Same seed and data -> same order as Axolotl's.

Example: two datasets of 3 and 2 tokenized rows, row 4 dropped as too long, permutation [3, 0, 4, 2, 1]:
    kept rows 0 1 2 | 3        order by place in the permutation -> 3, 0, 2, 1

curriculum_sampling keeps a single dataset in its file order (Axolotl skips the shuffle then); several
datasets are still shuffled after mixing unless shuffle_merged_datasets is false (Axolotl warns; so does ftkit).
"""
from __future__ import annotations

import numpy as np

from ftkit.log import log

ROW = "_row"  # the tokenized row's index inside its dataset (added by data.prepare, removed here)


def permutation(n: int, seed: int) -> np.ndarray:
    """The permutation `datasets.Dataset.shuffle(seed=seed)` applies to n rows."""
    return np.random.default_rng(seed).permutation(n)


def _column(ds, name: str) -> np.ndarray:
    """One int column of a datasets.Dataset as numpy, through Arrow (indexing the Dataset reads it row by row)."""
    return np.asarray(ds.with_format("arrow")[name].to_numpy(), dtype=np.int64)


def merge(parts: list, sizes: list[int], recipe):
    """Concatenate the kept rows of each dataset in the order Axolotl's shuffle-then-filter gives them.

    `sizes` are the tokenized row counts before filtering. shuffle_before_merging_datasets shuffles each
    dataset first; shuffle_merged_datasets (default) shuffles the concatenation.
    """
    import datasets

    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    place = np.arange(int(sum(sizes)), dtype=np.int64)  # place[global row] = its position in the final order
    keep = recipe.curriculum_sampling and len(parts) == 1  # Axolotl takes a single dataset as it is then
    if recipe.shuffle_before_merging_datasets and not keep:
        for off, n in zip(offsets, sizes):
            place[off:off + n] = off + np.argsort(permutation(n, recipe.seed))
    shuffle = recipe.shuffle_merged_datasets and not keep
    if shuffle and recipe.curriculum_sampling:
        log.warning("curriculum_sampling: the mixed datasets are shuffled (shuffle_merged_datasets), so batches follow "
                    "that order; set shuffle_merged_datasets: false to keep the files' order")
    if shuffle:
        order = np.argsort(place)  # rows in the order so far
        shuffled = order[permutation(len(order), recipe.seed)]
        place[shuffled] = np.arange(len(shuffled))
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if ROW not in ds.column_names:
        return ds
    rows = np.concatenate([_column(p, ROW) + off for p, off in zip(parts, offsets)]) \
        if len(ds) else np.zeros(0, dtype=np.int64)
    ds = ds.select(np.argsort(place[rows], kind="stable")) if len(ds) else ds
    return ds.remove_columns(ROW)  # an indices mapping: the rows are copied once, when the cache is written
