"""``python -m slimdiffsr.weights provision|check``."""

import sys

from slimdiffsr.weights.provisioning import main

sys.exit(main())
