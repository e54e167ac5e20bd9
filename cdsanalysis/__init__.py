"""cdsanalysis: read cds run stores and estimate memorisation, generalisation, CDS and regimes.

This package never imports torch: an analysis-only user can open and analyse stores without the
training stack. Its public names are imported on first use (PEP 562), so that importing a light
module of the package (``cds-analyze --help``) does not load xarray, zarr or scipy.
"""

from __future__ import annotations

import importlib
import logging as _logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdsanalysis.export import runs_dataframe, to_dataframe
    from cdsanalysis.store import open_runs
    from cdsanalysis.validate import StoreValidationError, validate_store

__all__ = ["open_runs", "validate_store", "StoreValidationError", "to_dataframe", "runs_dataframe"]

#: The module of each public name.
_HOMES = {
    "open_runs": "cdsanalysis.store",
    "validate_store": "cdsanalysis.validate",
    "StoreValidationError": "cdsanalysis.validate",
    "to_dataframe": "cdsanalysis.export",
    "runs_dataframe": "cdsanalysis.export",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


_logging.getLogger(__name__).addHandler(_logging.NullHandler())
