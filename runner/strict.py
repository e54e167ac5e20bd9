"""Base class of every grid-facing specification: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # Unknown keys are errors: a typo in a grid must never be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)
