"""ftkit: a fine-tuning cookbook. Recipes (YAML) and notebooks over transformers, peft, TRL and datasets."""
__version__ = "0.1.0"

from .config import Recipe, load_recipe  # noqa: E402,F401
from .errors import ConfigError, DataError, FtkitError  # noqa: E402,F401
