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


def rewrite_as_old_layout(path: Path) -> None:
    """Rewrite a store the runner has just written into the layout runners wrote before
    consolidated metadata, typed coordinates and the requested ``data_fraction``: integer extra
    coordinates (``p``, ``split_seed``, ``batch_size``) as text, the realised fraction in
    ``data_fraction`` and no ``data_fraction_realised``, ``status``'s ``flag_meanings`` a
    list, no root ``coordinates`` attribute and no consolidated metadata."""
    import json

    import numpy as np
    import zarr

    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    root["data_fraction"][...] = root["data_fraction_realised"][...]
    del root["data_fraction_realised"]
    for name in ("p", "split_seed", "batch_size"):
        values = root[name][...].astype(str)
        attrs = dict(root[name].attrs)
        del root[name]
        array = root.create_array(
            name,
            shape=values.shape,
            dtype=str,
            fill_value="",
            dimension_names=["run"],
            attributes={"role": "run_config", **attrs},
        )
        array[...] = np.asarray(values, dtype=object)
    status = root["status"]
    status.attrs["flag_meanings"] = str(status.attrs["flag_meanings"]).split()
    # Rewritten from the arrays' own metadata, the root metadata loses its consolidated copy.
    root.attrs.put({k: v for k, v in root.attrs.items() if k != "coordinates"})
    meta = json.loads((Path(path) / "zarr.json").read_text())
    assert meta.get("consolidated_metadata") is None and "coordinates" not in meta["attributes"]


@pytest.fixture
def old_layout():
    """:func:`rewrite_as_old_layout`, for tests that read stores written by older runners."""
    return rewrite_as_old_layout
