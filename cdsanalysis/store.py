"""Open run stores as lazy xarray Datasets."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

import schemas
from cdsanalysis.validate import StoreValidationError, validate_and_read

#: Runs per dask chunk of the per-step and histogram variables (memory per task: RUN_CHUNK x
#: steps x 4 bytes per metric, 25 MB at 100,000 steps).
RUN_CHUNK = 64


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
    decoded: dict[str, np.ndarray] = {}
    if validate:
        _, decoded = validate_and_read(location)
    try:
        # Dask chunks of RUN_CHUNK runs x all steps (each a whole number of the store's
        # one-run chunks): a few hundred tasks instead of one per stored chunk, whose
        # scheduling cost several times the read itself on large stores.
        ds = xr.open_zarr(
            location,
            consolidated=False,
            chunks={"run": RUN_CHUNK, "step": -1},
            use_zarr_fill_value_as_mask=False,
        )
    except Exception as exc:  # metadata that zarr or xarray cannot decode: say where
        raise StoreValidationError(location, [f"cannot be opened as a dataset: {exc}"]) from None
    version = int(ds.attrs["schema_version"])
    schema = schemas.load_schema(version)
    # Stores written since the root attribute ``coordinates`` existed open with these already
    # coordinates; older ones have them as data variables.
    per_run = [
        str(name)
        for name, var in ds.variables.items()
        if var.dims == ("run",)
        and schemas.role_of(str(name), version) in ("run_config", "run_state")
    ]
    ds = ds.set_coords(per_run)
    for name in per_run:
        if name in decoded:  # already read (and checked) by the validation
            ds[name] = ds[name].copy(data=decoded[name])
            continue
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
    ds = _with_requested_fraction(_with_schema_extras(ds, schema))
    status = schema["variables"]["status"]
    names = dict(zip(status["flag_values"], status["flag_meanings"], strict=True))
    codes = ds["status"].values
    ds = ds.assign_coords(
        status=(
            "run",
            np.array([names[int(c)] for c in codes], dtype=object),
            {"units": status["units"], "description": status["description"]},
        )
    )
    return _with_schema_attributes(ds, schema)


def _with_requested_fraction(ds: xr.Dataset) -> xr.Dataset:
    """A store written before ``data_fraction_realised`` existed holds the realised fraction in
    ``data_fraction``: it becomes ``data_fraction_realised``, and ``data_fraction`` the fraction
    each run's grid asked for (its ``spec_json``; ``n_samples`` over the split size, i.e. the
    realised fraction, for a run sized by ``n_samples``), as the runner writes both now."""
    if "data_fraction_realised" in ds.coords or "data_fraction" not in ds.coords:
        return ds
    realised = np.asarray(ds["data_fraction"].values, dtype=float)
    requested = realised.copy()
    for i, text in enumerate(ds["spec_json"].values):
        try:
            asked = json.loads(str(text)).get("data_fraction")
        except (ValueError, AttributeError):
            continue  # an unreadable spec keeps the realised fraction
        if isinstance(asked, (int, float)) and not isinstance(asked, bool):
            requested[i] = float(asked)
    return ds.assign_coords(
        data_fraction=("run", requested, ds["data_fraction"].attrs),
        data_fraction_realised=("run", realised),
    )


def _with_schema_attributes(ds: xr.Dataset, schema: dict) -> xr.Dataset:
    """Units and description from the schema on every variable it names (the schema of this
    version of ``cdsanalysis`` documents them, also for stores written before an entry was
    refined); an extra run coordinate this schema does not know says so."""
    specs = {**schema["variables"], **schema["extra_run_coordinates"]["known"]}
    for name in ds.variables:
        spec = specs.get(str(name))
        attrs = ds.variables[name].attrs
        if spec is not None:
            attrs.update({"units": spec["units"], "description": spec["description"]})
        elif ds[name].dims == ("run",):
            attrs.setdefault("units", "")
            attrs.setdefault(
                "description", "run configuration not described by this schema version"
            )
    return ds


def _with_schema_extras(ds: xr.Dataset, schema: dict) -> xr.Dataset:
    """Variables the schema marks optional (absent in stores written before they were added)
    as their fill value, and units and descriptions on the known extra coordinates.

    An absent per-(run, step) metric (``train_set_accuracy``) becomes a lazy NaN array (never
    measured) with the attribute ``absent``, so that readers can tell it from a stored one
    without reading it."""
    for name, spec in schema["variables"].items():
        if not spec.get("optional", False) or name in ds.variables:
            continue
        if spec["dims"] == ["run"]:
            if spec["dtype"] == schemas.STRING_DTYPE:
                column = np.full(ds.sizes["run"], "", dtype=object)
            elif spec["fill"] in ("NaN", "none"):
                column = np.full(ds.sizes["run"], np.nan)
            else:  # an integer fill (stop_step: 0)
                column = np.full(ds.sizes["run"], int(spec["fill"]), dtype=spec["dtype"])
            ds = ds.assign_coords({name: ("run", column, {"description": spec["description"]})})
        elif spec["dims"] == ["run", "step"]:
            stand_in = xr.full_like(ds["train_loss"], np.nan, dtype=spec["dtype"])
            stand_in.attrs = {
                "units": spec["units"],
                "description": spec["description"],
                "absent": "not in this store (written before the variable existed): NaN",
            }
            ds[name] = stand_in
    for name, spec in schema["extra_run_coordinates"]["known"].items():
        if name in ds.coords:
            ds = _as_schema_dtype(ds, name, spec["dtype"])
            attrs = {"units": spec["units"], "description": spec["description"]}
            ds[name].attrs.update({k: v for k, v in attrs.items() if k not in ds[name].attrs})
    return ds


def _as_schema_dtype(ds: xr.Dataset, name: str, dtype: str) -> xr.Dataset:
    """A known extra coordinate that an older runner stored as text (it wrote integers such as
    ``p`` and ``batch_size`` as strings), converted to the schema's dtype so that
    ``ds.sel(p=47)`` works; left as it is when its values do not convert."""
    values = ds[name].values
    if dtype == schemas.STRING_DTYPE or values.dtype.kind not in ("T", "U", "O"):
        return ds
    try:
        converted = np.array([str(v) for v in values]).astype(dtype)
    except ValueError:
        return ds
    return ds.assign_coords({name: ("run", converted, ds[name].attrs)})
