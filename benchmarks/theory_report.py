"""The numbers and figures of THEORY.md from one run store (``examples/delay_law.yaml``).

    python -m benchmarks.theory_report STORE --out docs/figures/ [--json PATH]

Runs the decay-model analyses of :mod:`cdsanalysis` on ``STORE`` with their default settings
(nothing here is tuned to the store) and prints, each number with its interval and run count:

- per cell of the grid (the swept fields among :data:`CELL_FIELDS` that vary in the store): runs,
  memorised, generalised, median memorisation and generalisation steps, and the pooled decay rate
  over lr*wd (:func:`cdsanalysis.decay.fit_decay` on the cell's runs: the random-effects
  interval on the mean rate), and whether that ratio is within :data:`RATIO_TOLERANCE` of 1
  (the point, and the whole interval);
- the delay law (:func:`cdsanalysis.delay_law.delay_law`) with ``gamma = lr * wd`` (the
  prediction) and with the fitted rate, for each clock the installed analysis offers (the norm
  clock always; the logit-scale clock when ``DelayLawSettings`` has a ``clock`` field);
- the non-circular forecast (:func:`cdsanalysis.forecast.forecast`): the default settings as the
  headline, then the variants of :data:`FORECAST_VARIANTS`, fixed here before the final grid was
  run (a sensitivity table, not a search for the setting that passes), per clock as above; the
  issue's goals (median |relative error| <= 20 %, >= 70 % of runs within 20 %) are checked on
  the headline only.

Figures (small PNGs in ``--out``): ``delay_law.png`` (``cds-analyze plot --kind delay_law``'s
figure, gamma = lr * wd), ``forecast.png`` (forecast against observed generalisation step, one
point per scored run; censored runs drawn at their last step with the forecast beside it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdsanalysis.cds import as_strings
from cdsanalysis.decay import fit_decay
from cdsanalysis.delay_law import DelayLawSettings, delay_law
from cdsanalysis.forecast import ForecastSettings, forecast
from cdsanalysis.notices import warnings_of
from cdsanalysis.regimes import classify_runs
from cdsanalysis.settings import AnalysisSettings
from cdsanalysis.store import open_runs
from cdsanalysis.thresholds import resolve_thresholds

#: Run coordinates that define a cell of the grid when they vary across the store's runs.
CELL_FIELDS = ("alpha", "alpha_scope", "weight_decay", "lr", "n_samples", "data_fraction", "label")
#: The decay "decays freely" in a cell when gamma / (lr * wd) is within this fraction of 1.
RATIO_TOLERANCE = 0.1
#: Forecast variants reported beside the default (the headline). Fixed before the final grid.
FORECAST_VARIANTS: dict[str, dict[str, Any]] = {
    "default (fitted gamma, ratio w*, leave one run out)": {},
    "gamma = lr * wd": {"gamma_source": "lr_wd"},
    "absolute w*": {"w_star_rule": "absolute"},
}
#: Figure size in inches (a column of a paper) and resolution: small PNGs.
FIGURE_SIZE = (3.4, 2.8)
FIGURE_DPI = 150


def clocks() -> list[str | None]:
    """The forecast clocks the installed analysis offers: ``[None]`` (the norm, no option) unless
    the forecast settings have a ``clock`` field (the logit-scale metrics). The delay law fits
    both clocks at once (its ``logit_`` results)."""
    return ["norm", "logit"] if "clock" in ForecastSettings.field_names() else [None]


def _clock_kw(clock: str | None) -> dict[str, str]:
    return {} if clock is None else {"clock": clock}


def _num(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _iv(res: xr.Dataset, name: str, digits: int = 3) -> str:
    point, low, high = (_num(res[f"{name}{s}"]) for s in ("", "_low", "_high"))
    if not math.isfinite(point):
        return "n/a"
    return f"{point:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def cell_fields(ds: xr.Dataset) -> list[str]:
    """The fields of :data:`CELL_FIELDS` that take more than one value across the runs; a
    ``label`` that only names another field's values (``wd0.3`` for weight decay 0.3) is left
    out."""
    out = []
    for name in CELL_FIELDS:
        varies = name in ds.coords and ds[name].dims == ("run",)
        if varies and len(set(as_strings(ds[name].values).tolist())) > 1:
            out.append(name)
    if "label" in out:
        labels = as_strings(ds["label"].values)
        for other in out:
            pairs = set(zip(labels.tolist(), as_strings(ds[other].values).tolist(), strict=True))
            if other != "label" and len(pairs) == len(set(labels.tolist())):
                out.remove("label")
                break
    return out


def cells(ds: xr.Dataset, fields: list[str]) -> list[tuple[dict[str, str], np.ndarray]]:
    """``(cell values, run indices)`` for every combination of ``fields`` present in ``ds``."""
    keys = [tuple(as_strings(ds[f].values)[i] for f in fields) for i in range(ds.sizes["run"])]
    out = []
    for key in sorted(set(keys), key=lambda k: tuple(_sort_key(v) for v in k)):
        at = np.array([k == key for k in keys])
        out.append((dict(zip(fields, key, strict=True)), np.flatnonzero(at)))
    return out


def _sort_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def cell_table(ds: xr.Dataset, settings: AnalysisSettings) -> list[dict[str, Any]]:
    """Per cell: events (``classify_runs``) and the pooled gamma / (lr * wd) of ``fit_decay``."""
    rows = []
    for values, idx in cells(ds, cell_fields(ds)):
        sub = ds.isel(run=idx)
        runs = classify_runs(sub, settings)
        mem = np.asarray(runs["memorisation_step"].values, np.float64)
        gen = np.asarray(runs["generalisation_step"].values, np.float64)
        fit = fit_decay(sub, settings)
        ratio = [_num(fit[f"ratio_mean{s}"]) for s in ("", "_low", "_high")]
        rows.append(
            {
                **values,
                "n_runs": int(idx.size),
                "n_done": int((as_strings(sub["status"].values) == "done").sum()),
                "n_memorised": int(np.isfinite(mem).sum()),
                "n_generalised": int(np.isfinite(gen).sum()),
                "median_memorisation_step": _nanmedian(mem),
                "median_generalisation_step": _nanmedian(gen),
                "median_delay_steps": _nanmedian(gen - mem),
                "ratio_mean": ratio[0],
                "ratio_mean_low": ratio[1],
                "ratio_mean_high": ratio[2],
                "n_pooled": int(_num(fit["n_pooled"])) if "n_pooled" in fit else 0,
                "ratio_point_within_tolerance": bool(abs(ratio[0] - 1) <= RATIO_TOLERANCE),
                "ratio_interval_within_tolerance": bool(
                    ratio[1] >= 1 - RATIO_TOLERANCE and ratio[2] <= 1 + RATIO_TOLERANCE
                ),
                "warnings": warnings_of(fit),
            }
        )
    return rows


def _nanmedian(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def law_summary(res: xr.Dataset, prefix: str = "") -> dict[str, Any]:
    """The delay law's estimates on one clock: ``prefix`` "" (weight norm) or "logit_"."""
    out: dict[str, Any] = {"n_runs": int(_num(res[f"{prefix}n_runs"])), "n_runs_in_store": None}
    out["n_runs_in_store"] = int(res.attrs.get("n_runs_in_store", 0))
    for name in ("slope", "intercept", "r_squared", "exponent", "log_r_squared"):
        for s in ("", "_low", "_high"):
            out[f"{name}{s}"] = _num(res[f"{prefix}{name}{s}"])
    out["warnings"] = warnings_of(res)
    return out


def forecast_summary(res: xr.Dataset, tolerance: float) -> dict[str, Any]:
    out = {
        name: _num(res[name])
        for name in (
            "median_abs_relative_error",
            "median_abs_relative_error_low",
            "median_abs_relative_error_high",
            "fraction_right",
            "fraction_right_low",
            "fraction_right_high",
        )
    }
    for name in ("n_scored_generalised", "n_right", "n_scored", "n_censored_scored"):
        out[name] = int(_num(res[name]))
    # None: nothing scored, so the goal is neither met nor missed
    median, fraction = out["median_abs_relative_error"], out["fraction_right"]
    out["goal_median_met"] = bool(median <= tolerance) if math.isfinite(median) else None
    out["goal_fraction_met"] = bool(fraction >= 0.7) if math.isfinite(fraction) else None
    out["warnings"] = warnings_of(res)
    return out


def plot_forecast(res: xr.Dataset, path: Path, title: str) -> None:
    """Forecast against observed generalisation step (log axes), ``y = x`` and the +-20 % band;
    censored runs as open markers at their last step (the observation is only a lower bound)."""
    import matplotlib.pyplot as plt

    from cdsanalysis.plots.common import STYLE, figure, legend_outside

    outcome = as_strings(res["outcome"].values)
    t_hat = np.asarray(res["forecast_step"].values, np.float64)
    obs = np.asarray(res["observed_generalisation_step"].values, np.float64)
    last = np.asarray(res["last_step"].values, np.float64)
    tol = float(res.attrs.get("tolerance_fraction", 0.2))
    with plt.rc_context(STYLE):
        fig, ax = figure(*FIGURE_SIZE)
        gen = outcome == "generalised"
        cen = outcome == "censored"
        values = np.concatenate([t_hat[gen | cen], obs[gen], last[cen]])
        values = values[np.isfinite(values) & (values > 0)]
        if values.size:
            lo, hi = values.min() / 1.3, values.max() * 1.3
            line = np.array([lo, hi])
            ax.plot(line, line, color="0.4", lw=0.8, ls="--", label="forecast = observed")
            ax.fill_between(
                line,
                line * (1 - tol),
                line * (1 + tol),
                color="0.85",
                lw=0,
                label=f"within {tol:.0%}",
            )
            ax.scatter(
                obs[gen],
                t_hat[gen],
                s=12,
                color="C0",
                zorder=3,
                label=f"generalised ({int(gen.sum())} runs)",
            )
            if cen.any():
                ax.scatter(
                    last[cen],
                    t_hat[cen],
                    s=14,
                    facecolors="none",
                    edgecolors="C3",
                    zorder=3,
                    label=f"censored at last step ({int(cen.sum())} runs)",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            legend_outside(fig, ax, "lower center", ncols=2)  # never over a point
        else:
            ax.text(0.5, 0.5, "no scored forecast", ha="center", transform=ax.transAxes)
        ax.set_xlabel("observed generalisation step")
        ax.set_ylabel("forecast generalisation step")
        ax.set_title(title, fontsize=7)
        fig.savefig(path, dpi=FIGURE_DPI)
        plt.close(fig)


def plot_law(res: xr.Dataset, path: Path, size_coord: str) -> None:
    import matplotlib.pyplot as plt

    from cdsanalysis.plots.common import STYLE, annotate_warnings
    from cdsanalysis.plots.delay_law import plot_delay_law

    fig = plot_delay_law(res, size_coord)
    annotate_warnings(fig, warnings_of(res))
    with plt.rc_context(STYLE):
        fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


def report(store: str, out_dir: Path) -> dict[str, Any]:
    """Every number of THEORY.md's results section, and the figures in ``out_dir``."""
    ds = open_runs(store)
    settings = AnalysisSettings()
    settings = resolve_thresholds(ds, settings).applied(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "store": store,
        "n_runs": int(ds.sizes["run"]),
        "status": dict(
            zip(*np.unique(as_strings(ds["status"].values), return_counts=True), strict=True)
        ),
        "cell_fields": cell_fields(ds),
        "cells": cell_table(ds, settings),
        "delay_law": {},
        "forecast": {},
        "figures": [],
    }
    result["status"] = {str(k): int(v) for k, v in result["status"].items()}
    for source in ("lr_wd", "fitted"):
        law = delay_law(ds, settings, DelayLawSettings(gamma_source=source))
        result["delay_law"][f"norm, gamma = {source}"] = law_summary(law)
        if "logit_n_runs" in law:
            result["delay_law"][f"logit, gamma = {source}"] = law_summary(law, "logit_")
        if source == "lr_wd":
            path = out_dir / "delay_law_norm.png"
            plot_law(law, path, settings.size_coord)
            result["figures"].append(str(path))
    for clock in clocks():
        tag = clock or "norm"
        for name, overrides in FORECAST_VARIANTS.items():
            fs = ForecastSettings(**overrides, **_clock_kw(clock))
            res = forecast(ds, settings, fs)
            result["forecast"][f"{tag}, {name}"] = forecast_summary(res, fs.tolerance_fraction)
            if not overrides:
                path = out_dir / f"forecast_{tag}.png"
                plot_forecast(res, path, f"forecast ({tag} clock, default settings)")
                result["figures"].append(str(path))
    return result


def render(result: dict[str, Any]) -> str:
    """The report as Markdown tables, ready for THEORY.md."""
    lines = [f"Store: {result['store']} ({result['n_runs']} runs; status {result['status']})", ""]
    fields = result["cell_fields"]
    tol = f"{RATIO_TOLERANCE:.0%}"
    lines += [
        "| "
        + " | ".join(
            [
                *fields,
                "runs",
                "memorised",
                "generalised",
                "T_mem",
                "T_gen",
                "delay",
                "gamma/(lr*wd) [90%] (pooled runs)",
                f"within {tol}",
            ]
        )
        + " |",
        "|" + "---|" * (len(fields) + 8),
    ]
    for row in result["cells"]:
        within = (
            "interval"
            if row["ratio_interval_within_tolerance"]
            else "point"
            if row["ratio_point_within_tolerance"]
            else "no"
        )
        ratio = (
            f"{row['ratio_mean']:.3g} [{row['ratio_mean_low']:.3g}, {row['ratio_mean_high']:.3g}]"
            f" ({row['n_pooled']})"
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    *(row[f] for f in fields),
                    str(row["n_runs"]),
                    str(row["n_memorised"]),
                    str(row["n_generalised"]),
                    f"{row['median_memorisation_step']:.0f}",
                    f"{row['median_generalisation_step']:.0f}",
                    f"{row['median_delay_steps']:.0f}",
                    ratio,
                    within,
                ]
            )
            + " |"
        )
    lines += ["", "Delay law (T_gen - T_mem = a + b x, x = log(w_mem / w_gen) / gamma):", ""]
    lines += [
        "| clock, gamma | runs fitted | slope b | intercept a | R^2 | exponent k | R^2 (log) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in result["delay_law"].items():
        lines.append(
            f"| {name} | {s['n_runs']} of {s['n_runs_in_store']} | {_fmt3(s, 'slope')} | "
            f"{_fmt3(s, 'intercept')} | {_fmt3(s, 'r_squared')} | {_fmt3(s, 'exponent')} | "
            f"{_fmt3(s, 'log_r_squared')} |"
        )
    lines += [
        "",
        "Forecast (first row per clock: the headline; goals: median <= 20 %, >= 70 % right):",
        "",
        "| clock, variant | median abs rel. error [90%] (runs) | right [90%] (k/n) | "
        "censored scored | goals met |",
        "|---|---|---|---|---|",
    ]
    for name, s in result["forecast"].items():
        met = [
            {True: "yes", False: "no", None: "n/a"}[s[f"goal_{g}_met"]]
            for g in ("median", "fraction")
        ]
        goals = " / ".join(met)
        lines.append(
            f"| {name} | {_fmt3(s, 'median_abs_relative_error')} ({s['n_scored_generalised']}) | "
            f"{_fmt3(s, 'fraction_right')} ({s['n_right']}/{s['n_scored']}) | "
            f"{s['n_censored_scored']} | {goals} |"
        )
    warnings = sorted(
        {
            w
            for part in ("delay_law", "forecast")
            for s in result[part].values()
            for w in s["warnings"]
        }
        | {w for row in result["cells"] for w in row["warnings"]}
    )
    if warnings:
        lines += ["", "Warnings:", *(f"- {w}" for w in warnings)]
    lines += ["", "Figures: " + ", ".join(result["figures"])]
    return "\n".join(lines)


def _fmt3(summary: dict[str, Any], name: str) -> str:
    point, low, high = (summary[f"{name}{s}"] for s in ("", "_low", "_high"))
    if not math.isfinite(point):
        return "n/a"
    return f"{point:.3g} [{low:.3g}, {high:.3g}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="run store of examples/delay_law.yaml")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"), help="figure folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    result = report(args.store, args.out)
    print(render(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
