"""Open run stores as lazy xarray Datasets."""

from __future__ import annotations

import numpy as np
import xarray as xr

import schemas
from cdsanalysis.validate import validate_store


def open_runs(location: str, validate: bool = True) -> xr.Dataset:
    """Open the run store at ``location`` as a lazy (dask-backed) :class:`xarray.Dataset`.

    Per-step metrics and histograms stay lazy; the small per-run arrays (configuration and
    state) are loaded and attached as coordinates along ``run``. ``status`` is decoded to its
    names (``pending``, ``running``, ``done``, ``failed``, ``diverged``).

    Parameters
    ----------
    location
        Path or URL of a store written by ``cds-run``.
    validate
        Check the store against its schema first (metadata only; cheap). On by default.

    Raises
    ------
    StoreValidationError
        When ``validate`` is on and the store does not follow the schema.
    """
    location = str(location)
    if validate:
        validate_store(location)
    ds = xr.open_zarr(location, consolidated=False, chunks={}, use_zarr_fill_value_as_mask=False)
    version = int(ds.attrs["schema_version"])
    schema = schemas.load_schema(version)
    per_run = [
        name
        for name, var in ds.data_vars.items()
        if var.dims == ("run",)
        and schema["variables"].get(name, {"role": "run_config"})["role"]
        in ("run_config", "run_state")
    ]
    ds = ds.set_coords(per_run)
    for name in per_run:
        ds[name] = ds[name].load()
    status = schema["variables"]["status"]
    names = dict(zip(status["flag_values"], status["flag_meanings"], strict=True))
    codes = ds["status"].values
    ds = ds.assign_coords(
        status=(
            "run",
            np.array([names[int(c)] for c in codes], dtype=object),
            {"description": status["description"]},
        )
    )
    return ds
