"""cdsanalysis: read cds run stores and estimate memorisation, generalisation, CDS and regimes.

This package never imports torch: an analysis-only user can open and analyse stores without the
training stack.
"""

from cdsanalysis.export import runs_dataframe, to_dataframe
from cdsanalysis.store import open_runs
from cdsanalysis.validate import StoreValidationError, validate_store

__all__ = ["open_runs", "validate_store", "StoreValidationError", "to_dataframe", "runs_dataframe"]

import logging as _logging

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
