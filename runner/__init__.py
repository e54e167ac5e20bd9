"""cds runner: trains grids of small models and writes dense metrics into Zarr run stores.

Importing this package does not import torch; the training modules do.
"""

__version__ = "0.1.0"

import logging as _logging

# A library logs, the application decides where to: without --log-file nothing is printed
# (no fallback to stderr), so the CLI's own messages stay the only output.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
