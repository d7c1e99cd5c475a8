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


def merge(parts: list, per_dataset: dict, recipe):
    """The datasets' kept rows as one set, in the order Axolotl's shuffle-then-filter gives them.

    SFT rows carry their tokenized index (ROW; `per_dataset[...]["tokenized_rows"]` counts them before
    filtering): shuffle_before_merging_datasets shuffles each dataset first, shuffle_merged_datasets (default)
    the concatenation. Rows without it (preference pairs) are shuffled after mixing.
    """
    import datasets

    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if ROW not in ds.column_names:
        return ds.shuffle(seed=recipe.seed) if recipe.shuffle_merged_datasets else ds
    sizes = [d["tokenized_rows"] for d in per_dataset.values()]
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
        place[order[permutation(len(order), recipe.seed)]] = np.arange(len(order))
    if not len(ds):
        return ds.remove_columns(ROW)
    # each row's global index, read through Arrow (indexing the Dataset reads it row by row)
    rows = np.concatenate([p.with_format("arrow")[ROW].to_numpy().astype(np.int64) + off
                           for p, off in zip(parts, offsets)])
    # an indices mapping: the rows are copied once, when the cache is written
    return ds.select(np.argsort(place[rows], kind="stable")).remove_columns(ROW)
