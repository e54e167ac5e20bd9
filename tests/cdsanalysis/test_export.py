"""Tidy export, and export -> import table round trips on a store the runner's writer made."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cdsanalysis import open_runs, runs_dataframe, to_dataframe
from cdsanalysis.cli import app
from cdsanalysis.export import config_table_path


@pytest.fixture
def native(curves, make_store):
    runs = {
        (100, 0): curves.run(30, 5, None),
        (200, 0): curves.run(30, 5, 21),
        (200, 1): curves.Planted(
            curves.jump(12, 3), curves.evaluated(curves.jump(12, 11)), status="running"
        ),
    }
    ds = make_store(runs, 30)  # (100, 1) stays pending with nothing measured
    return ds


def test_to_dataframe_rows_are_the_measured_values(native):
    df = to_dataframe(native)
    run = str(native["run"].values[2])  # (200, 0)
    test = df[(df.run == run) & (df.metric == "test_accuracy")]
    assert test.step.tolist() == [1, 11, 21]  # evaluated every 10 steps
    assert test.value.tolist() == pytest.approx([0.05, 0.05, 0.97])
    assert (test.n_samples == 200).all() and (test.seed == 0).all()
    assert len(df[(df.run == run) & (df.metric == "train_accuracy")]) == 30
    assert df.value.notna().all()
    runs = runs_dataframe(native)
    assert runs.run.tolist() == [str(r) for r in native["run"].values]
    assert runs.status.tolist() == ["done", "pending", "done", "running"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_then_import_is_lossless(native, tmp_path, fmt):
    store = str(tmp_path / "store0.zarr")  # where make_store wrote it (its first store)
    runner = CliRunner()
    src = tmp_path / "imported.zarr"
    out = tmp_path / f"runs.{fmt}"
    result = runner.invoke(app, ["export", store, "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert config_table_path(out).exists()
    result = runner.invoke(app, ["import", "table", str(out), "--out", str(src)])
    assert result.exit_code == 0, result.output
    back = open_runs(str(src))
    assert back["run"].values.tolist() == native["run"].values.tolist()
    assert back.sizes["step"] == native.sizes["step"]
    for name in ("train_accuracy", "test_accuracy", "train_loss", "param_norm", "param_norm_total"):
        np.testing.assert_array_equal(back[name].values, native[name].values, err_msg=name)
    for name, coord in native.coords.items():
        if coord.dims != ("run",) or name == "spec_json":
            continue
        a, b = np.asarray(coord.values), np.asarray(back[name].values)
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert [str(v) for v in a] == [str(v) for v in b], name
        assert a.dtype.kind == b.dtype.kind or {a.dtype.kind, b.dtype.kind} <= {"O", "T", "U"}
