"""Data: reading files, one prepare for every method (SFT tokens + labels or preference rows; counted drops,
mixing, split, cache); sample_packing packs them afterwards (plugins/packing.py)."""
from ftkit.data.files import load_raw
from ftkit.data.prepare import Prepared, prepare, show_mask

__all__ = ["Prepared", "load_raw", "prepare", "show_mask"]
