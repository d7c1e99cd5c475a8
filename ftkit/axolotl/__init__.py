"""The Axolotl door: what ftkit does with each key of an Axolotl config, as data (catalogue.yaml) and one walk.

catalogue.py reads catalogue.yaml (every Axolotl option that is not a recipe field: alias, speed-only, internal,
ignored or refused); migrate.py walks a recipe's keys with it before the schema validates them; suggest.py
tells a near miss (an error with did-you-mean) from a key Axolotl would drop (accepted and said); report.py
words the result; harvest.py (a maintainer tool) lists every name Axolotl shipped. This package knows ftkit's
recipe only by the field names recipe/load.py hands it, so it sits below ftkit.recipe.
"""
from ftkit.axolotl.migrate import Migration, migrate
from ftkit.axolotl.report import ALIAS, EMPTY, IGNORED, NOT_AXOLOTL, NOTE, REFUSED, USED, Line, Report

__all__ = ["ALIAS", "EMPTY", "IGNORED", "NOT_AXOLOTL", "NOTE", "REFUSED", "USED", "Line", "Migration", "Report",
           "migrate"]
