"""Models: tokenizer and model loading (precision, quantization, adapters), twins, merging, the family registry."""
from ftkit.models.load import (Precision, apply_lora, count_parameters, load_base, load_model, load_tokenizer,
                               resolve_model_path, resolve_precision)
from ftkit.models.trained import load_trained

__all__ = ["Precision", "apply_lora", "count_parameters", "load_base", "load_model", "load_tokenizer", "load_trained",
           "resolve_model_path", "resolve_precision"]
