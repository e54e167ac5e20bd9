"""Open run stores as lazy xarray Datasets."""

from __future__ import annotations

import numpy as np
import xarray as xr

import schemas
from cdsanalysis.validate import StoreValidationError, validate_store


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
    try:
        ds = xr.open_zarr(
            location, consolidated=False, chunks={}, use_zarr_fill_value_as_mask=False
        )
    except Exception as exc:  # metadata that zarr or xarray cannot decode: say where
        raise StoreValidationError(location, [f"cannot be opened as a dataset: {exc}"]) from None
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
        try:
            ds[name] = ds[name].load()
        except Exception as exc:  # a torn or garbage chunk of a per-run variable
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise StoreValidationError(
                location,
                [
                    f"variable '{name}' has a chunk that cannot be read ({type(exc).__name__}: "
                    f"{reason})"
                ],
            ) from None
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
