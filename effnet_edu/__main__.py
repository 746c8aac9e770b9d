"""``python -m effnet_edu`` is the ``effnet-edu`` command."""

import sys

from .cli import main

sys.exit(main())
