"""Test-wide settings: no hub downloads, and the shared real data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

#: ../shared/data beside the repository (CI places shared/ there); override with CDS_SHARED_DATA.
SHARED_DATA = Path(
    os.environ.get("CDS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data directory; skips (or fails under CDS_REQUIRE_SHARED_DATA=1) if absent."""
    if not SHARED_DATA.is_dir():
        reason = f"shared data not found at {SHARED_DATA} (set CDS_SHARED_DATA to its location)"
        if os.environ.get("CDS_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return SHARED_DATA
