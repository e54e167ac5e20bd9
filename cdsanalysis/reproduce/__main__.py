"""``python -m cdsanalysis.reproduce``: see :mod:`cdsanalysis.reproduce.command`."""

from __future__ import annotations

import sys

from cdsanalysis.reproduce.command import main

if __name__ == "__main__":
    sys.exit(main())
