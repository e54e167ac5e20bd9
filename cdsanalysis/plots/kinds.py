"""The figure kinds of ``cds-analyze plot --kind`` and what each needs from a store (no
matplotlib import here, so ``plot --help`` and the HTML report can ask cheaply).

A figure that cannot be drawn from a store is never drawn empty: :func:`unavailable` names the
reason ("landscape needs >= 2 widths; this store has 1") and ``cds-analyze plot`` exits 2 with
it, or, without ``--kind``, lists the kind as skipped with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # cds-analyze --help imports this module: no xarray at import time
    import xarray as xr

#: Figure kinds, each drawn by the module of the same name (``cds`` by ``cds_curve``).
KINDS = ("stepwise", "curves", "landscape", "trend", "histogram", "cds", "survival", "delay_law")

#: Most runs drawn in one ``curves`` figure (more become unreadable); select runs first.
MAX_CURVE_RUNS = 8
#: Fewest models of a ``trend`` figure: its OLS line has an interval only with >= 3 points.
MIN_TREND_MODELS = 3


class NotDrawable(ValueError):
    """This figure cannot be drawn from this store; the message says why (exit 2)."""


def _count(ds: xr.Dataset, name: str) -> int:
    if name not in ds.coords:
        return 0
    return int(np.unique(np.asarray(ds[name].values)).size)


def _n_done(ds: xr.Dataset) -> int:
    return int((np.asarray(ds["status"].values).astype(str) == "done").sum())


def _plural(name: str) -> str:
    return {"n_samples": "data sizes (n_samples)", "data_fraction": "data fractions"}.get(
        name, name + ("es" if name.endswith("s") else "s")
    )


def _needs(kind: str, ds: xr.Dataset, name: str, least: int) -> str | None:
    have = _count(ds, name)
    if have >= least:
        return None
    return f"{kind} needs >= {least} {_plural(name)}; this store has {have}"


def unavailable(
    kind: str, ds: xr.Dataset, size_coord: str, by: str, group: str = "embedding", run: int = 0
) -> str | None:
    """Why figure ``kind`` cannot be drawn from ``ds`` (the runs left after ``--where``), or
    None when it can. Cheap: reads coordinates only (what needs a computation, such as the runs
    the delay law fits, is checked by the drawing itself and raised as :class:`NotDrawable`).

    Parameters
    ----------
    kind
        One of :data:`KINDS`.
    ds
        A run store opened with :func:`cdsanalysis.open_runs`.
    size_coord, by
        The data-size coordinate and the model coordinate (landscape, trend).
    group, run
        The histogram's group and run index.
    """
    done = _n_done(ds)
    if kind in ("stepwise", "cds", "survival", "delay_law", "landscape", "trend") and done == 0:
        return f"{kind} needs >= 1 finished (done) run; this store has 0 of {ds.sizes['run']}"
    if kind == "curves":
        n_runs = ds.sizes["run"]
        if n_runs > MAX_CURVE_RUNS:
            return (
                f"curves draws at most {MAX_CURVE_RUNS} runs; this store has {n_runs} "
                "(select some with --where, e.g. --where seed=0)"
            )
        if not (np.asarray(ds["steps_done"].values) > 0).any():
            return "curves needs a run with >= 1 step written; this store has none"
        return None
    if kind == "landscape":
        return _needs(kind, ds, by, 2) or _needs(kind, ds, size_coord, 2)
    if kind == "trend":
        return _needs(kind, ds, by, MIN_TREND_MODELS)
    if kind == "cds":
        return _needs(kind, ds, size_coord, 2)
    if kind == "delay_law" and done < 3:
        return f"delay_law needs >= 3 finished runs (a regression); this store has {done}"
    if kind == "histogram":
        if "weight_histogram" not in ds.data_vars or ds.sizes.get("hist_step", 0) == 0:
            return "histogram needs recorded weight histograms; this store has none"
        groups = [str(g) for g in ds["hist_group"].values]
        if group not in groups:
            return f"histogram needs group {group!r}; this store has {groups}"
        if not 0 <= run < ds.sizes["run"]:
            return f"histogram needs run index {run} in 0..{ds.sizes['run'] - 1}"
    return None
