"""Optional plug-ins: the training methods beyond SFT and the features a recipe turns on, each one module.

The core (recipe, data, models, train, formats) imports none of them: ftkit/hooks.py lists them by name and
calls the hooks a recipe turns on (as Axolotl's `plugins:`). Reading `ftkit train` for an SFT recipe never leads
here; each plug-in reads on its own, next to the TRL trainer or transformers callback it drives."""
