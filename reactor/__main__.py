"""``python -m reactor``."""

import sys

from reactor.cli import main

sys.exit(main())
