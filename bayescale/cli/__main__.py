"""``python -m bayescale.cli``: the ``bayescale`` command."""

import sys

from bayescale.cli import main

sys.exit(main())
