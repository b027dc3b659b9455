"""The ``cure`` command line: :func:`main` is the entry point (``cure = "cure_core.cli:main"``).

``parser`` builds the options from the settings classes, ``commands``/``circuit_commands``/
``unlearn_commands`` do the work, ``printers`` format results, ``boundary`` turns every user
error into one line and exit status 2.
"""

from cure_core.cli.boundary import main

__all__ = ["main"]
