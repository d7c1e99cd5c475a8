"""`dataset_exact_deduplication`: drop rows identical to an earlier one (Axolotl's rule: the whole row, hashed).

Run on tokenized rows (SFT: input_ids, labels, attention_mask) or converted preference rows; the first
occurrence in the current order is kept, the others are dropped and counted.
"""
from __future__ import annotations

import hashlib
import json

from ftkit.log import log


def row_hash(row: dict) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()


def drop_exact_duplicates(ds, against=None) -> tuple[object, int]:
    """(ds without repeated rows, how many were dropped). `against`: rows of another set (e.g. train) that
    also count as seen, so an eval row equal to a train row is dropped too."""
    seen = {row_hash(r) for r in against} if against is not None else set()
    keep = []
    for i, row in enumerate(ds):
        h = row_hash(row)
        if h not in seen:
            seen.add(h)
            keep.append(i)
    dropped = len(ds) - len(keep)
    log.info(f"dataset_exact_deduplication: {dropped} duplicate rows dropped, {len(keep)} kept")
    return (ds.select(keep) if dropped else ds), dropped
