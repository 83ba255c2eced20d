"""``python -m normstyle``."""

import sys

from normstyle.cli import main

sys.exit(main())
