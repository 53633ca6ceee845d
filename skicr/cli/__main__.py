"""``python -m skicr.cli ...``: the ``skicr`` command."""

import sys

from . import main

sys.exit(main())
