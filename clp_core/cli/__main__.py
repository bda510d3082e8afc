"""``python -m clp_core.cli``: the ``clp`` command."""

from . import main

main()
