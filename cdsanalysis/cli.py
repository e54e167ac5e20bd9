"""``cds-analyze``: validate run stores and report regimes and the critical data size."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import xarray as xr
from rich.console import Console

from cdsanalysis.aggregate import DEFAULT_AGGREGATE, DEFAULT_LAST_K
from cdsanalysis.regimes import RegimeRules
from cdsanalysis.report import regimes_report, render_regimes_table
from cdsanalysis.store import open_runs
from cdsanalysis.validate import StoreValidationError, validate_store

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
    if as_json:
        print(
            json.dumps({"store": store, "valid": True, "schema_version": attrs["schema_version"]})
        )
    else:
        print(f"{store}: valid cds run store (schema v{attrs['schema_version']})")


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


def main() -> None:
    app(prog_name="cds-analyze")


if __name__ == "__main__":
    sys.exit(main())
