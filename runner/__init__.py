"""cds runner: trains grids of small models and writes dense metrics into Zarr run stores.

Importing this package does not import torch; the training modules do.
"""

__version__ = "0.1.0"
