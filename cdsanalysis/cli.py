"""``cds-analyze``: validate run stores; report regimes, CDS, decay fits, step-wise events; plot."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import xarray as xr
from rich.console import Console

from cdsanalysis.aggregate import DEFAULT_AGGREGATE, DEFAULT_LAST_K
from cdsanalysis.cds_curve import cds_curve
from cdsanalysis.decay import fit_decay
from cdsanalysis.estimators import StepwiseAnalysis
from cdsanalysis.modelwise import accuracy_landscape, accuracy_trend, cds_by_model
from cdsanalysis.plots.kinds import KINDS
from cdsanalysis.regimes import RegimeRules
from cdsanalysis.report import regimes_report, render_regimes_table
from cdsanalysis.smoothing import DEFAULT_SMOOTHING_WIDTH
from cdsanalysis.stepwise import DEFAULT_THRESHOLDS
from cdsanalysis.store import open_runs
from cdsanalysis.tables import dataset_to_json, fmt, interval, render_table
from cdsanalysis.validate import StoreValidationError, run_failures, validate_store

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True, markup=False, highlight=False)

StoreArg = Annotated[str, typer.Argument(help="path or URL of a run store written by cds-run")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="also write the result to this file")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}")
    return typer.Exit(code)


def select_runs(ds: xr.Dataset, where: list[str]) -> xr.Dataset:
    """Keep the runs whose coordinates match every ``KEY=VALUE`` in ``where``."""
    for clause in where:
        key, sep, text = clause.partition("=")
        if not sep or key not in ds.coords or ds[key].dims != ("run",):
            per_run = sorted(str(k) for k, c in ds.coords.items() if c.dims == ("run",))
            raise _fail(f"--where {clause!r}: expected KEY=VALUE with KEY one of {per_run}")
        values = ds[key].values
        wanted = type(values[0].item() if hasattr(values[0], "item") else values[0])(text)
        ds = ds.isel(run=np.flatnonzero(values == wanted))
        if ds.sizes["run"] == 0:
            raise _fail(f"--where {clause!r} matches no run")
    return ds


def _emit(text: str, out: Path | None) -> None:
    print(text)
    if out is not None:
        out.write_text(text + "\n")


@app.command()
def validate(
    store: StoreArg,
    deep: Annotated[
        bool, typer.Option("--deep", help="also read every metric to check NaN conventions")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check a store against its schema; exit 1 naming every problem found."""
    try:
        attrs = validate_store(store, deep=deep)
    except StoreValidationError as exc:
        if as_json:
            print(json.dumps({"store": store, "valid": False, "problems": exc.problems}))
        else:
            err.print(str(exc), highlight=False)
        raise typer.Exit(1) from None
    failures = run_failures(store)
    if as_json:
        print(
            json.dumps(
                {
                    "store": store,
                    "valid": True,
                    "schema_version": attrs["schema_version"],
                    "failed_runs": failures,
                }
            )
        )
        return
    print(f"{store}: valid cds run store (schema v{attrs['schema_version']})")
    for run in failures:
        why = run["failure"].rstrip() or "(no reason recorded: written before cds kept it)"
        print(f"\nrun {run['index']} ({run['run']}) {run['status']}:\n{why}")


@app.command()
def regimes(
    store: StoreArg,
    eps: Annotated[float, typer.Option(help="test accuracy that counts as generalised")] = 0.9,
    memorisation_threshold: Annotated[
        float, typer.Option(help="train accuracy that counts as memorised")
    ] = 0.99,
    aggregate: Annotated[
        str,
        typer.Option(
            help="reduction of each run's test curve: median_last, mean_last, final or max"
        ),
    ] = DEFAULT_AGGREGATE,
    last_k: Annotated[
        int, typer.Option(help="measured values reduced by median_last / mean_last (else 1)")
    ] = DEFAULT_LAST_K,
    surplus_max_delay_ratio: Annotated[
        float, typer.Option(help="largest generalisation/memorisation step ratio for surplus")
    ] = 2.0,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples")] = 2000,
    confidence: Annotated[float, typer.Option(help="interval confidence level")] = 0.9,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    require_all_larger: Annotated[
        bool, typer.Option(help="CDS = smallest n from which every larger n also passes")
    ] = False,
    where: Annotated[
        list[str] | None, typer.Option(help="keep runs with KEY=VALUE (repeatable)")
    ] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Regime of every data size, with memorisation/generalisation steps and the CDS."""
    try:
        rules = RegimeRules(
            memorisation_threshold=memorisation_threshold,
            eps=eps,
            aggregate=aggregate,  # type: ignore[arg-type]
            last_k=last_k,
            surplus_max_delay_ratio=surplus_max_delay_ratio,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        ds = select_runs(open_runs(store), where or [])
        report = regimes_report(
            ds,
            rules,
            n_resamples=resamples,
            confidence=confidence,
            seed=seed,
            require_all_larger=require_all_larger,
        )
    except StoreValidationError as exc:
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"{exc}\n(select one configuration with --where KEY=VALUE)") from None
    report["store"]["location"] = store
    _emit(json.dumps(report, indent=2) if as_json else render_regimes_table(report), out)


# -- shared options of the analysis commands ---------------------------------------------------

EpsOpt = Annotated[float, typer.Option(help="test accuracy that counts as generalised")]
AggOpt = Annotated[
    str, typer.Option(help="reduction of each run's test curve: median_last, mean_last, final, max")
]
LastKOpt = Annotated[int, typer.Option(help="measured values reduced by *_last (else 1)")]
ResamplesOpt = Annotated[int, typer.Option(help="bootstrap resamples")]
ConfidenceOpt = Annotated[float, typer.Option(help="interval confidence level")]
SeedOpt = Annotated[int, typer.Option(help="bootstrap seed")]
WhereOpt = Annotated[list[str] | None, typer.Option(help="keep runs with KEY=VALUE (repeatable)")]
SizeOpt = Annotated[str, typer.Option(help="data-size coordinate: n_samples or data_fraction")]


def _open(store: str, where: list[str] | None) -> xr.Dataset:
    try:
        return select_runs(open_runs(store), where or [])
    except StoreValidationError as exc:
        raise _fail(str(exc)) from None


def _settings_line(ds: xr.Dataset, names: Sequence[str]) -> str:
    return "; ".join(f"{k}={ds.attrs[k]}" for k in names if k in ds.attrs)


@app.command()
def cds(
    store: StoreArg,
    eps: EpsOpt = 0.9,
    aggregate: AggOpt = DEFAULT_AGGREGATE,
    last_k: LastKOpt = DEFAULT_LAST_K,
    resamples: ResamplesOpt = 2000,
    confidence: ConfidenceOpt = 0.9,
    seed: SeedOpt = 0,
    size_coord: SizeOpt = "n_samples",
    chance_accuracy: Annotated[
        float, typer.Option(help="floor of the logistic fit (e.g. 0.5 for binary tasks)")
    ] = 0.0,
    by: Annotated[
        str | None, typer.Option(help="model coordinate (width, depth): CDS per model + trend")
    ] = None,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """CDS by the grid rule and by a logistic fit in log size, with bootstrap intervals."""
    ds = _open(store, where)
    common = dict(
        eps=eps,
        aggregate=aggregate,
        last_k=last_k,
        n_resamples=resamples,
        confidence=confidence,
        seed=seed,
        size_coord=size_coord,
        chance_accuracy=chance_accuracy,
    )
    try:
        result = cds_by_model(ds, by=by, **common) if by else cds_curve(ds, **common)
    except ValueError as exc:
        raise _fail(f"{exc}\n(select one configuration with --where KEY=VALUE)") from None
    if as_json:
        _emit(json.dumps(dataset_to_json(result.drop_dims("size_grid", errors="ignore"))), out)
        return
    conf = f"{confidence:.0%}"
    if by:
        rows = [
            [
                fmt(v),
                interval(result, "cds_glm", j),
                interval(result, "cds_grid", j),
                fmt(result["n_runs"].values[j]),
            ]
            for j, v in enumerate(result[by].values)
        ]
        text = render_table([by, f"CDS fit [{conf}]", f"CDS grid [{conf}]", "runs"], rows)
        text += (
            f"\n\ntrend: d log CDS / d log {by} = {interval(result, 'trend_slope')}, "
            f"p = {fmt(result['trend_p_value'], 2)} ({fmt(result['trend_n_models'])} models)"
        )
    else:
        rows = [
            [
                fmt(v),
                interval(result, "mean_accuracy", i),
                fmt(result["n_runs"].values[i]),
                fmt(result["fit_accuracy"].values[i], 3),
            ]
            for i, v in enumerate(result[size_coord].values)
        ]
        text = render_table([size_coord, f"mean accuracy [{conf}]", "runs", "fit"], rows)
        text += (
            f"\n\nCDS (logistic fit in log {size_coord}, eps={eps:g}): "
            f"{interval(result, 'cds_glm')}"
            f"{'  (extrapolated)' if bool(result['extrapolated']) else ''}"
            f"\nCDS (grid rule): {interval(result, 'cds_grid')}"
            f"\n{conf} bootstrap intervals, {resamples} resamples over "
            f"{fmt(result['n_runs_total'])} runs ({fmt(result['n_failed_resamples'])} failed fits)"
        )
    text += "\n" + _settings_line(result, ("aggregate", "last_k", "chance_accuracy", "seed"))
    _emit(text, out)


@app.command()
def decay(
    store: StoreArg,
    model: Annotated[str, typer.Option(help="exponential (log-linear OLS) or asymptote")] = (
        "exponential"
    ),
    window: Annotated[
        str, typer.Option(help="auto (memorisation to generalisation) or START:END steps")
    ] = "auto",
    norm: Annotated[str, typer.Option(help="total or a parameter group")] = "total",
    eps: EpsOpt = 0.9,
    memorisation_threshold: Annotated[
        float, typer.Option(help="train accuracy that counts as memorised")
    ] = 0.99,
    w_star: Annotated[
        float | None, typer.Option(help="norm at generalisation (default: each run's own)")
    ] = None,
    cov_type: Annotated[str, typer.Option(help="HAC (Newey-West) or nonrobust")] = "HAC",
    confidence: ConfidenceOpt = 0.9,
    resamples: ResamplesOpt = 2000,
    seed: SeedOpt = 0,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Fit ||w(t)|| = w0 exp(-gamma t) per run: gamma, gamma/(lr*wd), predicted generalisation."""
    ds = _open(store, where)
    if window != "auto":
        start, sep, end = window.partition(":")
        if not sep or not start.isdigit() or not end.isdigit():
            raise _fail(f"--window {window!r}: expected 'auto' or START:END (steps, e.g. 200:800)")
        window_value: Any = (int(start), int(end))
    else:
        window_value = "auto"
    try:
        res = fit_decay(
            ds,
            model=model,
            window=window_value,
            norm=norm,
            memorisation_threshold=(memorisation_threshold),
            eps=eps,
            w_star=w_star,
            confidence=confidence,
            cov_type=cov_type,
            n_resamples=resamples,
            seed=seed,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _emit(json.dumps(dataset_to_json(res)), out)
        return
    conf = f"{confidence:.0%}"
    rows = []
    for i in range(res.sizes["run"]):
        size = res["n_samples"].values[i] if "n_samples" in res.coords else "-"
        seed_i = res["seed"].values[i] if "seed" in res.coords else "-"
        rows.append(
            [
                str(res["run"].values[i])[:8],
                fmt(size),
                fmt(seed_i),
                f"{fmt(res['window_start_step'].values[i])}-{fmt(res['window_end_step'].values[i])}",
                interval(res, "gamma", i),
                interval(res, "gamma_over_lr_wd", i),
                fmt(res["predicted_generalisation_step"].values[i], 4),
                fmt(res["observed_generalisation_step"].values[i]),
                str(res["fit_status"].values[i]),
            ]
        )
    text = render_table(
        [
            "run",
            "n",
            "seed",
            "window",
            f"gamma /step [{conf}]",
            f"gamma/(lr*wd) [{conf}]",
            "predicted gen",
            "observed gen",
            "fit",
        ],
        rows,
    )
    text += (
        f"\n\nmean over {fmt(res['n_fitted'])} fitted runs: gamma = {interval(res, 'gamma_mean')}"
        f" per step, gamma/(lr*wd) = {interval(res, 'ratio_mean')} ({conf} bootstrap over runs)"
        f"\n"
        + _settings_line(res, ("model", "window", "norm", "cov_type", "hac_maxlags", "w_star"))
    )
    _emit(text, out)


@app.command()
def stepwise(
    store: StoreArg,
    thresholds: Annotated[
        str, typer.Option(help="comma-separated thresholds (paper: 0.1..0.9; model-wise 0.5..0.85)")
    ] = ",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS),
    metric: Annotated[str, typer.Option(help="per-step variable")] = "test_accuracy",
    smoothing: Annotated[str, typer.Option(help="none, ema (causal) or gaussian (non-causal)")] = (
        "none"
    ),
    smoothing_width: Annotated[
        float, typer.Option(help="EMA span / Gaussian sigma, in measurements")
    ] = (DEFAULT_SMOOTHING_WIDTH),
    sustain: Annotated[int, typer.Option(help="consecutive measurements needed")] = 1,
    size_coord: SizeOpt = "n_samples",
    resamples: ResamplesOpt = 2000,
    confidence: ConfidenceOpt = 0.9,
    seed: SeedOpt = 0,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """First step reaching each threshold: median [min-max] (reached/runs) per data size."""
    ds = _open(store, where)
    try:
        values = [float(t) for t in thresholds.split(",") if t.strip()]
        est = StepwiseAnalysis(
            values,
            metric,
            smoothing,
            smoothing_width,
            sustain,
            size_coord,
            resamples,
            confidence,
            seed,
        ).fit(ds)
    except ValueError as exc:
        raise _fail(f"--thresholds/--smoothing/...: {exc}") from None
    by_size = est.by_size_
    if as_json:
        _emit(
            json.dumps(
                {
                    "runs": dataset_to_json(est.first_step_.to_dataset()),
                    "by_size": dataset_to_json(by_size),
                }
            ),
            out,
        )
        return
    rows = []
    for i, size in enumerate(by_size[size_coord].values):
        row = [fmt(size)]
        for j in range(by_size.sizes["threshold"]):
            k, n = by_size["n_reached"].values[i, j], by_size["n_runs"].values[i]
            med = by_size["median_step"].values[i, j]
            lo, hi = by_size["min_step"].values[i, j], by_size["max_step"].values[i, j]
            row.append(f"{fmt(med)} [{fmt(lo)}-{fmt(hi)}] ({k}/{n})" if k else f"- (0/{n})")
        rows.append(row)
    headers = [size_coord] + [f"{t:g}" for t in by_size["threshold"].values]
    text = render_table(headers, rows)
    text += (
        f"\n\nfirst step with {metric} >= threshold: median [min-max] (reached/done runs); "
        f"smoothing={smoothing}, sustain={sustain}; never reached = '-', not 0"
    )
    _emit(text, out)


@app.command()
def plot(
    store: StoreArg,
    kind: Annotated[str, typer.Option(help=f"one of {', '.join(KINDS)}")],
    out: Annotated[Path, typer.Option("--out", help="output path stem: writes STEM.png, STEM.pdf")],
    eps: EpsOpt = 0.9,
    aggregate: AggOpt = DEFAULT_AGGREGATE,
    last_k: LastKOpt = DEFAULT_LAST_K,
    by: Annotated[str, typer.Option(help="model coordinate for landscape / trend")] = "width",
    size_coord: SizeOpt = "n_samples",
    group: Annotated[str, typer.Option(help="histogram group")] = "embedding",
    run: Annotated[int, typer.Option(help="run index for --kind histogram")] = 0,
    smoothing: Annotated[str, typer.Option(help="stepwise: none, ema, gaussian")] = "none",
    resamples: ResamplesOpt = 2000,
    confidence: ConfidenceOpt = 0.9,
    seed: SeedOpt = 0,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw a figure (PNG and PDF): stepwise, curves, landscape, trend, histogram or cds."""
    if kind not in KINDS:
        raise _fail(f"--kind must be one of {list(KINDS)}, got {kind!r}")
    ds = _open(store, where)
    # matplotlib is imported only when plotting
    from cdsanalysis.plots import cds_curve as p_cds
    from cdsanalysis.plots import curves as p_curves
    from cdsanalysis.plots import histogram as p_hist
    from cdsanalysis.plots import landscape as p_land
    from cdsanalysis.plots import stepwise as p_step
    from cdsanalysis.plots import trend as p_trend
    from cdsanalysis.plots.common import save_figure

    acc = dict(aggregate=aggregate, last_k=last_k)
    boot = dict(n_resamples=resamples, confidence=confidence, seed=seed)
    try:
        if kind == "stepwise":
            by_size = (
                StepwiseAnalysis(smoothing=smoothing, size_coord=size_coord, **boot)
                .fit(ds)
                .by_size_
            )
            fig = p_step.plot_stepwise(by_size)
        elif kind == "curves":
            rules = RegimeRules(eps=eps, aggregate=aggregate, last_k=last_k)  # type: ignore[arg-type]
            fig = p_curves.plot_curves(ds, rules)
        elif kind == "landscape":
            land = accuracy_landscape(ds, by, size_coord, **acc)  # type: ignore[arg-type]
            cds_m = cds_by_model(ds, by=by, eps=eps, size_coord=size_coord, **acc, **boot)
            fig = p_land.plot_landscape(land, cds_m, eps)
        elif kind == "trend":
            fig = p_trend.plot_trend(accuracy_trend(ds, by, size_coord, **acc))  # type: ignore[arg-type]
        elif kind == "histogram":
            fig = p_hist.plot_histogram(ds, group, run)
        else:
            curve = cds_curve(ds, eps=eps, size_coord=size_coord, **acc, **boot)  # type: ignore[arg-type]
            fig = p_cds.plot_cds_curve(curve)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    paths = [str(p) for p in save_figure(fig, out)]
    print(json.dumps({"kind": kind, "files": paths}) if as_json else "\n".join(paths))


def main() -> None:
    app(prog_name="cds-analyze")


if __name__ == "__main__":
    sys.exit(main())
