"""ftkit: a fine-tuning cookbook. Recipes (YAML) and notebooks over transformers, peft, TRL and datasets."""
__version__ = "0.1.0"

from ftkit.env import quiet_known_noise as _quiet_known_noise
from ftkit.log import install as _install_console

_install_console()  # `[ftkit] ...` lines on stdout; see ftkit/log.py
_quiet_known_noise()  # known-harmless library lines (bitsandbytes, DeepSpeed on CPU); see ftkit/env.py

from ftkit.errors import ConfigError, DataError, FtkitError  # noqa: E402,F401
from ftkit.recipe import Recipe, load_recipe  # noqa: E402,F401
