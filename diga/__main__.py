"""`python -m diga` is the same as the `diga` command."""

import sys

from diga.cli import main

sys.exit(main())
