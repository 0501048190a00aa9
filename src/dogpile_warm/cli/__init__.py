"""The ``dogpile-warm`` command (``pip install 'dogpile_warm[cli]'`` for its tables).

:mod:`~dogpile_warm.cli.commands` parses and runs the commands,
:mod:`~dogpile_warm.cli.render` draws their output, :mod:`~dogpile_warm.cli.demo`
is the guided tour that ``dogpile-warm demo`` runs.
"""

from .commands import main

__all__ = ["main"]
