"""``python -m dogpile_warm.cli``: the ``dogpile-warm`` command."""

import sys

from .commands import main

sys.exit(main())
