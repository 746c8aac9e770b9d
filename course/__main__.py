"""``python -m course build`` and ``python -m course grade ASSIGNMENT SUBMISSION...``: see course/README.md."""

import sys

from .autograde import main

sys.exit(main())
