"""``python -m slimdiffsr.evaluate`` (same as ``slimdiffsr evaluate``)."""

import sys

from slimdiffsr.evaluate.cli import main

sys.exit(main())
