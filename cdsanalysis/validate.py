"""Store validation, re-exported: it lives in :mod:`schemas.validate` so that the runner (which
refuses to write into an invalid store) and this package share it without importing each other."""

from schemas.validate import (
    StoreValidationError,
    run_failures,
    validate_and_read,
    validate_store,
)

__all__ = ["StoreValidationError", "run_failures", "validate_and_read", "validate_store"]
