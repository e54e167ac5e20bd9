"""Long and wide tables written by pandas, CSV and Parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cdsanalysis import open_runs, validate_store
from cdsanalysis.cli import app
from cdsanalysis.importers.table import IMPORTER
from cdsanalysis.importers.writer import ImportOptions, write_store


def _import(source, out, **options):
    return write_store(
        IMPORTER.read_runs(source, {}),
        out,
        kind="table",
        source=str(source),
        options=ImportOptions(**options),
    )


def _long_frame():
    rows = []
    for n, seed in ((100, 0), (200, 1)):
        for step in (1, 2, 3, 4):
            rows.append((f"r{n}", step, "train_acc", step / 4, n, seed, "gpt", 1e-3))
        for step in (1, 3):  # evaluated every 2 steps
            rows.append((f"r{n}", step, "eval/accuracy", n / 1000 + step, n, seed, "gpt", 1e-3))
    columns = ["run", "step", "metric", "value", "n_samples", "seed", "model", "lr"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["task"] = "modular_addition"
    return frame


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_table(tmp_path, suffix):
    path = tmp_path / f"runs{suffix}"
    frame = _long_frame()
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    summary = _import(path, tmp_path / "s.zarr")
    assert (summary.runs, summary.steps, summary.points) == (2, 4, 12)
    ds = open_runs(str(tmp_path / "s.zarr"))
    assert [str(r) for r in ds["run"].values] == ["r100", "r200"]
    np.testing.assert_array_equal(ds["train_accuracy"].values[1], [0.25, 0.5, 0.75, 1.0])
    test = ds["test_accuracy"].values[1]
    np.testing.assert_array_equal(test, np.float32([1.2, np.nan, 3.2, np.nan]))
    assert ds["n_samples"].values.tolist() == [100, 200] and ds["n_samples"].dtype == np.int64
    assert ds["lr"].values.tolist() == [1e-3, 1e-3]
    assert ds["width"].values.tolist() == [0, 0]  # not in the source: unknown
    assert ds["eval_every"].values.tolist() == [2, 2]


def test_wide_tables_per_run_with_path_template_and_sidecar(tmp_path):
    for n in (100, 300):
        run_dir = tmp_path / "runs" / f"mlp_{n}_7"
        run_dir.mkdir(parents=True)
        pd.DataFrame(
            {
                "step": [1, 2, 3],
                "train_loss": [2.0, 1.0, 0.5],
                "val_acc": [0.1, np.nan, 0.9],
                "optimizer": ["adamw"] * 3,  # constant, not a metric name: configuration
            }
        ).to_parquet(run_dir / "history.parquet")
    sidecar = {"task": "modular_addition", "runs": {"runs/mlp_300_7/history": {"alpha": 3.0}}}
    sidecar["alpha"] = 1.0
    _import(
        tmp_path / "runs",
        tmp_path / "w.zarr",
        path_template="runs/{model}_{n_samples}_{seed}",
        sidecar={**sidecar, "runs": {"mlp_300_7/history": {"alpha": 3.0}}},
    )
    validate_store(str(tmp_path / "w.zarr"), deep=True)
    ds = open_runs(str(tmp_path / "w.zarr"))
    assert ds["n_samples"].values.tolist() == [100, 300]
    assert ds["seed"].values.tolist() == [7, 7] and ds["seed"].dtype == np.int64
    assert [str(m) for m in ds["model"].values] == ["mlp", "mlp"]
    assert ds["alpha"].values.tolist() == [1.0, 3.0]
    assert [str(o) for o in ds["optimizer"].values] == ["adamw", "adamw"]
    np.testing.assert_array_equal(ds["test_accuracy"].values[0], np.float32([0.1, np.nan, 0.9]))


def test_unknown_metric_names_it_and_the_file_then_map_and_ignore_fix_it(tmp_path):
    frame = _long_frame()
    frame.loc[frame.index[-1], "metric"] = "perplexity"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"t.csv \(run 'r200', metric 'perplexity'\): metric "):
        _import(path, tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary directory left
    _import(path, tmp_path / "b.zarr", ignore=("perplexity",))
    _import(path, tmp_path / "c.zarr", metric_map={"perplexity": "test_loss"})
    ds = open_runs(str(tmp_path / "c.zarr"))
    assert np.isfinite(ds["test_loss"].values[1]).sum() == 1


def test_conflicting_duplicate_rows_name_both_lines(tmp_path):
    frame = _long_frame()
    frame = pd.concat([frame, frame.iloc[[1]].assign(value=0.99)], ignore_index=True)
    frame.to_csv(tmp_path / "d.csv", index=False)
    # row 1 of the data is line 3 of the file (header = line 1); the duplicate is the last line
    last = len(frame) + 1
    with pytest.raises(ValueError, match=rf"d.csv, line {last}: run 'r100', metric 'train_acc', "):
        _import(tmp_path / "d.csv", tmp_path / "d.zarr")
    frame.iloc[:-1].pipe(lambda f: pd.concat([f, f.iloc[[1]]])).to_csv(
        tmp_path / "same.csv", index=False
    )
    _import(tmp_path / "same.csv", tmp_path / "same.zarr")  # an identical repeat is fine


def test_bad_cells_name_line_and_column(tmp_path):
    frame = _long_frame().astype({"value": object, "step": object})
    frame.loc[2, "value"] = "high"
    frame.to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(ValueError, match=r"v.csv, line 4, column 'value': 'high' is not a number"):
        list(IMPORTER.read_runs(tmp_path / "v.csv", {}))
    frame = _long_frame().astype({"step": float})
    frame.loc[5, "step"] = 2.5
    frame.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(ValueError, match=r"s.csv, line 7, column 'step': .*whole number"):
        list(IMPORTER.read_runs(tmp_path / "s.csv", {}))
    frame = _long_frame()
    frame.loc[3, "lr"] = 0.5
    frame.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match=r"c.csv, line 5, column 'lr': run 'r100' has more than"):
        list(IMPORTER.read_runs(tmp_path / "c.csv", {}))


def test_swept_field_missing_for_one_run(tmp_path):
    frame = _long_frame()
    sidecar = {"runs": {"r100": {"weight_decay": 1.0}}}
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"run 'r200' .*no value for 'weight_decay', which other"):
        _import(tmp_path / "t.csv", tmp_path / "x.zarr", sidecar=sidecar)


def test_step_zero_needs_an_offset(tmp_path):
    frame = _long_frame()
    frame["step"] -= 1
    frame.to_csv(tmp_path / "z.csv", index=False)
    with pytest.raises(ValueError, match="has step 0; .*--step-offset 1"):
        _import(tmp_path / "z.csv", tmp_path / "z.zarr")
    summary = _import(tmp_path / "z.csv", tmp_path / "z.zarr", step_offset=1)
    assert summary.steps == 4


def test_cli_import_with_sidecar_and_set(tmp_path):
    frame = _long_frame().drop(columns=["task", "model"])
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "side.yaml").write_text(yaml.safe_dump({"task": "modular_addition"}))
    runner = CliRunner()
    args = ["import", "table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "t.zarr")]
    missing = runner.invoke(app, args)
    said = " ".join(missing.output.split())
    assert missing.exit_code == 2 and "no value for 'task', which the run-store schema" in said
    ok = runner.invoke(
        app, [*args, "--config", str(tmp_path / "side.yaml"), "--set", "model=mlp", "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert '"runs": 2' in ok.output
    assert runner.invoke(app, ["validate", str(tmp_path / "t.zarr")]).exit_code == 0
    again = runner.invoke(app, [*args, "--set", "model=mlp"])
    assert again.exit_code == 2 and "exists" in " ".join(again.output.split())
    unknown = runner.invoke(app, ["import", "nope", str(tmp_path), "--out", "x.zarr"])
    said = " ".join(unknown.output.split())
    assert unknown.exit_code == 2 and "choose one of tensorboard, wandb, table" in said
