"""``python -m cure_core.cli`` (used by the parallel training workers)."""

import sys

from cure_core.cli.boundary import main

sys.exit(main())
