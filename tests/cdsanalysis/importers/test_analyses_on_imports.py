"""Issue 15, item 4: every analysis gives the same numbers on imported runs as on the native store.

A tiny real grid (modular addition p = 31, an MLP, 3 sizes x 2 seeds x 300 steps: it memorises at
every size and groks at the largest) is trained once by ``cds-run``. Its runs are then written
out as other tools would have logged them:

- TensorBoard: ``torch.utils.tensorboard.SummaryWriter`` (the real writer), every logged step of
  every metric and parameter norm with ``add_scalar``, ``global_step`` counted from 0 (the
  initialisation is step 0, as most training loops log it), the configuration by
  ``add_hparams``; imported with ``--step-offset 1``.
- W&B: a ``scan_history()``-style export written by pandas (``_step`` counting ``wandb.log``
  calls from 0, ``_runtime``, ``_timestamp``, the metric columns with NaN where not logged, and a
  ``trainer/global_step`` column with the training step) plus ``config.yaml`` in W&B's own format
  (``key: {desc: null, value: ...}``); imported with ``--option step_column=trainer/global_step``.

``regimes``, ``cds`` and ``decay`` (``--json``) must then agree with the native store's numbers
*exactly*: the store's metrics are float32, TensorBoard's ``simple_value`` is float32 and
pandas writes each float32-as-float64 with a round-tripping repr, so every imported value is the
same float32 bit pattern (checked first), and the analyses see identical inputs. No tolerance is
needed anywhere, with one condition: the runs are named so that the importers (which order runs
by name) keep the native store's run order. Pooled figures (``decay``'s random-effects
``gamma_mean``) sum over runs, and in another order they differ in the last bit (1e-16 relative).
Run ids differ (the imported runs are named by their directories), so per-run results are
compared by ``(n_samples, seed)``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cdsanalysis.cli import app
from cdsanalysis.store import open_runs

GRID = """\
name: imported-e2e
task: {p: 31}
n_samples: [300, 500, 700]
seed: [0, 1]
model: {family: mlp, width: 128, depth: 1, embedding: 32}
optimizer: {lr: 1.0e-2, weight_decay: 1.0}
steps: 300
eval_every: 5
flush_every: 300
"""

#: Run coordinates that are the run's state or identity, not its configuration.
NOT_CONFIG = {"run", "spec_json", "status", "steps_done", "failure", "steps_planned"}
#: Store metric -> the name logged to TensorBoard / W&B (all in the importers' default table).
LOGGED_NAMES = {
    "train_loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "test_loss": "test/loss",
    "test_accuracy": "test/accuracy",
    "train_set_loss": "train_set_loss",
    "train_set_accuracy": "train_set_accuracy",
    "param_norm_total": "norm/total",
}
#: Options per analysis. eps 0.5: in 300 steps the largest size generalises to ~0.8 (at 0.9
#: the CDS would be censored above the grid). data_fraction_realised (n over the train split)
#: follows n_samples; the regimes/cds check would otherwise count it as a second axis.
POOLED = ["--allow-varying", "seed", "--allow-varying", "data_fraction_realised"]
OPTIONS = {
    "regimes": ["--eps", "0.5", *POOLED],
    "cds": ["--eps", "0.5", *POOLED],
    "decay": ["--eps", "0.5"],
}


def _cli(*args: Any) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def payload(text: str) -> Any:
    """A ``--json`` output's result, with or without the ``{"command", "settings", "warnings",
    "result"}`` envelope."""
    data = json.loads(text)
    return data.get("result", data) if isinstance(data, dict) else data


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    """The grid trained by the real ``cds-run`` (~8 s of CPU)."""
    pytest.importorskip("torch", reason="training needs the [train] extra")
    root = tmp_path_factory.mktemp("native")
    (root / "grid.yaml").write_text(GRID)
    store = root / "runs.zarr"
    result = subprocess.run(
        [sys.executable, "-c", "from runner.cli import main; main()"]
        + ["--grid", str(root / "grid.yaml"), "--out", str(store), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return store


def _runs(store: Path) -> list[dict[str, Any]]:
    """Per run: its id, configuration and logged metric series (steps 1-based, float32)."""
    ds = open_runs(store)
    runs = []
    for i in range(ds.sizes["run"]):
        run = ds.isel(run=i)
        config = {
            name: run[name].values.item()
            for name, coord in ds.coords.items()
            if coord.dims == ("run",) and name not in NOT_CONFIG
        }
        config = {k: str(v) if isinstance(v, str) else v for k, v in config.items()}
        series = {LOGGED_NAMES[m]: run[m].values for m in LOGGED_NAMES}
        for g, group in enumerate(ds["group"].values):
            series[f"param_norm/{group}"] = run["param_norm"].values[:, g]
        runs.append({"id": str(run["run"].values), "config": config, "series": series})
    return runs


def _write_tensorboard(runs: list[dict[str, Any]], root: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for number, run in enumerate(runs):
        # named so that the importer's order (by name) is the native one (see the docstring)
        writer = SummaryWriter(str(root / f"{number:02d}-{run['id']}"))
        for tag, values in run["series"].items():
            for index in np.flatnonzero(~np.isnan(values)):
                # global_step 0 = the initialisation (store step 1)
                writer.add_scalar(tag, values[index], global_step=int(index))
        writer.add_hparams(run["config"], {})  # into a sub-directory: folded into the run
        writer.close()


def _write_wandb(runs: list[dict[str, Any]], root: Path) -> None:
    for number, run in enumerate(runs):
        directory = root / f"run-{number:02d}"  # W&B's run ids, in the native order
        directory.mkdir(parents=True)
        columns = {k: v.astype(np.float64) for k, v in run["series"].items()}
        logged = np.flatnonzero(~np.all(np.isnan(np.stack(list(columns.values()))), axis=0))
        history = pd.DataFrame(
            {
                "_step": np.arange(logged.size),  # wandb.log calls, counted from 0
                "_runtime": 0.01 * (logged + 1),
                "_timestamp": 1.7e9 + 0.01 * (logged + 1),
                "trainer/global_step": logged + 1,
                **{name: values[logged] for name, values in columns.items()},
            }
        )
        history.to_csv(directory / "history.csv", index=False)
        config = {"wandb_version": 1, "_wandb": {"desc": None, "value": {"cli_version": "0.16"}}}
        config.update({k: {"desc": None, "value": v} for k, v in run["config"].items()})
        (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def stores(native, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("imported")
    runs = _runs(native)
    _write_tensorboard(runs, root / "tb")
    _write_wandb(runs, root / "wandb")
    out = {"native": native, "tensorboard": root / "tb.zarr", "wandb": root / "wandb.zarr"}
    _cli("import", "tensorboard", root / "tb", "--out", out["tensorboard"], "--step-offset", 1)
    _cli(
        "import", "wandb", root / "wandb", "--out", out["wandb"],
        "--option", "step_column=trainer/global_step",
    )  # fmt: skip
    return out


@pytest.mark.parametrize("kind", ["tensorboard", "wandb"])
def test_imported_values_are_the_native_float32_values(stores, kind):
    native, imported = open_runs(stores["native"]), open_runs(stores[kind])
    assert imported.attrs["import_kind"] == kind
    for name in [*LOGGED_NAMES, "param_norm"]:
        np.testing.assert_array_equal(imported[name].values, native[name].values, err_msg=name)
        assert imported[name].dtype == native[name].dtype == np.float32
    for name in ("n_samples", "seed", "lr", "weight_decay", "eval_every", "steps_done", "task"):
        assert imported[name].values.tolist() == native[name].values.tolist(), name


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    """What must agree: every result field, runs keyed by configuration, not by run id.

    ``regimes`` is a report (its ``store`` block names the store: dropped). ``cds`` and
    ``decay`` are xarray results: their data variables and attributes (settings, thresholds,
    warnings) are compared; of the coordinates, only the values along non-run dimensions (the
    data sizes) -- the run coordinates are the store's own (run ids, ``spec_json``, descriptions),
    and per-run variables are keyed by ``(n_samples, seed)`` instead.
    """
    if "data_vars" not in result:
        return {k: _runs_by_config(v) for k, v in result.items() if k != "store"}
    coords = result["coords"]
    keys = (
        list(zip(coords["n_samples"]["data"], coords["seed"]["data"], strict=True))
        if ("run" in result["dims"])
        else None
    )
    out: dict[str, Any] = {k: v for k, v in result.items() if k not in ("coords", "data_vars")}
    for name, coord in coords.items():
        if "run" not in coord["dims"]:
            out[f"coord {name}"] = coord["data"]
    for name, var in result["data_vars"].items():
        by_run = var["dims"] == ["run"]
        out[name] = dict(zip(keys, var["data"], strict=True)) if by_run else var
    return out


def _runs_by_config(value: Any) -> Any:
    """A report's per-run rows keyed by ``(n_samples, seed)``, without the run id."""
    if isinstance(value, list) and value and all(isinstance(r, dict) and "run" in r for r in value):
        return {
            (r["n_samples"], r["seed"]): {k: v for k, v in r.items() if k != "run"} for r in value
        }
    return value


def _analyses(store: Path) -> dict[str, Any]:
    return {
        command: _comparable(payload(_cli(command, store, "--json", *OPTIONS[command])))
        for command in OPTIONS
    }


def test_regimes_cds_and_decay_agree_exactly_on_every_import(stores):
    native = _analyses(stores["native"])
    # the grid is not degenerate: sizes in two regimes, a CDS bracket, fitted decays
    regimes = [row["regime"] for row in native["regimes"]["data_sizes"]]
    assert regimes == ["insufficiency", "insufficiency", "sufficiency"], regimes
    assert native["regimes"]["cds"]["bracket"]["bracket"] == [500.0, 700.0]
    gammas = [g for g in native["decay"]["gamma"].values() if g is not None]
    assert len(gammas) >= 4 and all(math.isfinite(g) for g in gammas)
    for kind in ("tensorboard", "wandb"):
        imported = _analyses(stores[kind])
        for command in OPTIONS:
            assert imported[command].keys() == native[command].keys(), (kind, command)
            for field, value in native[command].items():
                assert imported[command][field] == value, (kind, command, field)
