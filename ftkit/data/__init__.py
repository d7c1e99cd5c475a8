"""Data: reading files, turning rows into tokens and labels, counting drops, caching, packing, preference rows."""
from ftkit.data.files import load_raw
from ftkit.data.prepare import Prepared, prepare, show_mask

__all__ = ["Prepared", "load_raw", "prepare", "show_mask"]
