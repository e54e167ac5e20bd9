"""Run stores as tidy tables: one row per measurement, plus one row per run for its configuration.

:func:`to_dataframe` is for pandas and seaborn users (``sns.lineplot(df[df.metric ==
"test_accuracy"], x="step", y="value", hue="n_samples")``); :func:`export_store` writes the same
as files (``cds-analyze export``), which ``cds-analyze import table`` reads back unchanged.

The **long table** has columns ``run``, ``step``, ``metric``, ``value``: one row per measured
value of a per-step metric (``param_norm`` as ``param_norm/<group>``). Unmeasured steps (NaN in
the store) have no row; infinite values (a diverged run's loss) are kept. The **config table**
(:func:`runs_dataframe`) has one row per run: ``run``, every per-run coordinate (``status`` by
name, ``steps_done``, ``spec_json``, ...). Files: ``PATH`` (long) and ``<stem>.config<suffix>``
beside it (:func:`config_table_path`). Weight histograms are not exported (they stay in the store).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

import schemas

#: Columns of the long table, in order.
LONG_COLUMNS = ("run", "step", "metric", "value")
#: How the CSV files write a missing (NaN) configuration value, and read it back.
CSV_NAN = "NaN"


def config_table_path(path: str | Path) -> Path:
    """Where the per-run config table of the long table at ``path`` lives."""
    path = Path(path)
    return path.with_name(f"{path.stem}.config{path.suffix}")


def _metric_names(ds: xr.Dataset) -> list[str]:
    return [
        name
        for name in schemas.variables_with_role("metric")
        if name in ds.data_vars and "absent" not in ds[name].attrs
    ]


def _long_blocks(ds: xr.Dataset, runs_per_block: int = 64) -> Iterator[pd.DataFrame]:
    """The long table, ``runs_per_block`` runs at a time (a block of runs x steps in memory)."""
    run_ids = np.asarray([str(r) for r in ds["run"].values], dtype=object)
    steps = np.asarray(ds["step"].values, dtype=np.int64)
    for start in range(0, ds.sizes["run"], runs_per_block):
        part = slice(start, start + runs_per_block)
        for name in _metric_names(ds):
            data = np.asarray(ds[name].isel(run=part).values, dtype=np.float64)
            if data.ndim == 2:
                labels = [name]
                data = data[:, :, None]
            else:
                labels = [f"{name}/{g}" for g in ds["group"].values]
            for k, label in enumerate(labels):
                run_i, step_i = np.nonzero(~np.isnan(data[:, :, k]))
                if not len(run_i):
                    continue
                yield pd.DataFrame(
                    {
                        "run": run_ids[part][run_i],
                        "step": steps[step_i],
                        "metric": label,
                        "value": data[run_i, step_i, k],
                    }
                )


def runs_dataframe(ds: xr.Dataset) -> pd.DataFrame:
    """One row per run: ``run`` and every per-run coordinate (``status`` by name)."""
    columns = {"run": [str(r) for r in ds["run"].values]}
    for name, coord in ds.coords.items():
        if name == "run" or coord.dims != ("run",):
            continue
        values = np.asarray(coord.values)
        columns[str(name)] = (
            [str(v) for v in values] if values.dtype.kind in ("O", "U", "T") else values
        )
    return pd.DataFrame(columns)


def to_dataframe(ds: xr.Dataset, config: bool = True) -> pd.DataFrame:
    """The tidy long table of ``ds``: ``run``, ``step``, ``metric``, ``value`` (measured values
    only), with each run's configuration columns joined on (``config=False``: without).

    Sorted by run (store order), metric, step.
    """
    blocks = list(_long_blocks(ds))
    if blocks:
        long = pd.concat(blocks, ignore_index=True)
    else:
        long = pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in zip(LONG_COLUMNS, "Oifd", strict=True)}
        )
    order = {r: i for i, r in enumerate(str(r) for r in ds["run"].values)}
    long = long.sort_values(
        ["run", "metric", "step"], key=lambda c: c.map(order) if c.name == "run" else c
    ).reset_index(drop=True)
    if not config:
        return long
    runs = runs_dataframe(ds).drop(columns=["spec_json"], errors="ignore")
    return long.merge(runs, on="run", how="left")


def export_store(
    ds: xr.Dataset, out: str | Path, file_format: Literal["parquet", "csv"]
) -> tuple[Path, Path, int]:
    """Write the long table to ``out`` and the config table beside it; return both paths and
    the number of measurements written."""
    out = Path(out)
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"format must be parquet or csv, got {file_format!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    long = to_dataframe(ds, config=False)
    runs = runs_dataframe(ds)
    config_path = config_table_path(out)
    if file_format == "parquet":
        long.to_parquet(out, index=False)
        runs.to_parquet(config_path, index=False)
    else:
        long.to_csv(out, index=False, na_rep=CSV_NAN)
        runs.to_csv(config_path, index=False, na_rep=CSV_NAN)
    return out, config_path, len(long)
