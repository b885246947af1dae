"""``python -m nflows_tutorial``: the course's command line (see :mod:`nflows_tutorial.cli`)."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
