"""`python -m ftkit ...` is the same as the `ftkit` command."""
import sys

from ftkit.cli import main

sys.exit(main())
