"""``python -m softphone``: the same as the ``softphone`` command."""

import sys

from .cli import main

sys.exit(main())
