"""The authors' log formats, written line by line as their trainers write them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cdsanalysis import open_runs, validate_store
from cdsanalysis.importers.authors import IMPORTER
from cdsanalysis.importers.writer import ImportOptions, write_store

REQUIRED = {"task": "modular_addition", "model": "gpt", "n_samples": 2000, "seed": 0}


def modular_line(step, train_loss, test_loss, train_acc, test_acc, norm):
    # the modular trainer's logging.info(f"Step: {k}, Train Loss: {x}, ...") with repr floats
    return (
        f"INFO:root:Step: {step}, Train Loss: {train_loss}, Test Loss: {test_loss}, "
        f"Train Acc: {train_acc}, Test Acc: {test_acc}, L2 Norm: {norm}\n"
    )


def json_line(record):
    return "INFO:root:" + json.dumps(record) + "\n"


def _import(source, out, **options):
    return write_store(
        IMPORTER.read_runs(source, {}),
        out,
        kind="authors",
        source=str(source),
        options=ImportOptions(**options),
        importer_version=IMPORTER.version,
    )


def test_modular_lines_keep_exponents_and_steps(tmp_path):
    log = tmp_path / "logs" / "modular_2000_0.log"
    log.parent.mkdir()
    log.write_text(
        "INFO:root:Starting training\n"
        + modular_line(1, 4.73, 4.74, 0.01, 0.0094, 55.2)
        + modular_line(2, 1.2e-05, 4.7, 1.0, 0.02, 55.1)
        + modular_line(3, 3.5e-07, 2.5e-1, 1.0, 0.95, 54.0)
    )
    _import(
        log.parent,
        tmp_path / "m.zarr",
        path_template="logs/modular_{n_samples}_{seed}",
        set_values={"task": "modular_addition", "model": "gpt"},
    )
    validate_store(str(tmp_path / "m.zarr"), deep=True)
    ds = open_runs(str(tmp_path / "m.zarr"))
    assert ds.sizes == {**ds.sizes, "run": 1, "step": 3}
    train_loss = ds["train_loss"].values[0]
    # float32 storage: compare with the float32 of the logged text, never 1.2 (their parser)
    np.testing.assert_array_equal(train_loss, np.float32([4.73, 1.2e-05, 3.5e-07]))
    np.testing.assert_array_equal(ds["test_accuracy"].values[0], np.float32([0.0094, 0.02, 0.95]))
    np.testing.assert_array_equal(ds["param_norm_total"].values[0], np.float32([55.2, 55.1, 54]))
    assert int(ds["n_samples"].values[0]) == 2000 and ds["n_samples"].dtype == np.int64
    assert str(ds["status"].values[0]) == "done" and int(ds["steps_done"].values[0]) == 3
    assert ds.attrs["import_kind"] == "authors" and ds.attrs["importer_version"] == "1"


def test_json_lines_evaluated_every_n_steps(tmp_path):
    lines = []
    for step in range(0, 25):  # the IMDB trainer: Step from 0, test metrics every 10 steps here
        record = {"Step": step, "Train Loss": 0.7 / (step + 1), "Train Acc": 0.5, "L2 Norm": 300.0}
        if step % 10 == 0:
            record.update({"Test Loss": 0.69, "Test Acc": 0.5 + step / 100})
        lines.append(json_line(record))
    log = tmp_path / "imdb.log"
    log.write_text("".join(lines))
    _import(log, tmp_path / "j.zarr", set_values={**REQUIRED, "task": "imdb", "model": "bert"})
    ds = open_runs(str(tmp_path / "j.zarr"))
    assert ds.sizes["step"] == 25  # Step 0..24 -> store steps 1..25
    test = ds["test_accuracy"].values[0]
    assert np.flatnonzero(~np.isnan(test)).tolist() == [0, 10, 20]
    np.testing.assert_array_equal(test[[0, 10, 20]], np.float32([0.5, 0.6, 0.7]))
    assert float(ds["train_loss"].values[0][4]) == np.float32(0.7 / 5)
    assert int(ds["eval_every"].values[0]) == 10


def test_unreadable_step_line_names_file_and_line(tmp_path):
    log = tmp_path / "bad.log"
    log.write_text(modular_line(1, 1, 1, 0, 0, 5) + "INFO:root:Step: 2, Train Loss: 1.2.3\n")
    with pytest.raises(ValueError, match=r"bad.log, line 2: cannot read 'Train Loss: 1.2.3'"):
        list(IMPORTER.read_runs(log, {}))


def test_conflicting_duplicate_step_names_both_lines(tmp_path):
    log = tmp_path / "dup.log"
    log.write_text(
        modular_line(1, 1, 1, 0, 0, 5)
        + modular_line(2, 0.5, 1, 0, 0, 5)
        + modular_line(2, 0.5, 1, 0, 0, 5)  # identical repeat: fine
        + modular_line(2, 0.4, 1, 0, 0, 5)
    )
    with pytest.raises(
        ValueError, match=r"dup.log, line 4: 'Train Loss' at Step 2 is 0.4, but line 2"
    ):
        list(IMPORTER.read_runs(log, {}))


def test_mixed_formats_and_no_records_are_errors(tmp_path):
    mixed = tmp_path / "mixed.log"
    mixed.write_text(modular_line(1, 1, 1, 0, 0, 5) + json_line({"Step": 1, "Train Loss": 1.0}))
    with pytest.raises(ValueError, match=r"mixed.log, line 2: a json record in a log of modular"):
        list(IMPORTER.read_runs(mixed, {}))
    empty = tmp_path / "empty.log"
    empty.write_text("hello\n")
    with pytest.raises(ValueError, match="empty.log: no 'INFO:root:Step"):
        list(IMPORTER.read_runs(empty, {}))


def test_missing_required_field_names_it_and_the_fix(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(modular_line(1, 1, 1, 0, 0, 5))
    options = {k: v for k, v in REQUIRED.items() if k != "n_samples"}
    with pytest.raises(
        ValueError, match=r"run 'run' \(.*run.log\): no value for 'n_samples'.*--set"
    ):
        _import(log, tmp_path / "x.zarr", set_values=options)
    assert list(tmp_path.iterdir()) == [log]  # nothing half-written, no temporary directory


def test_can_open(tmp_path):
    log = tmp_path / "a.log"
    log.write_text(modular_line(1, 1, 1, 0, 0, 5))
    other = tmp_path / "b.txt"
    other.write_text("step,loss\n")
    assert IMPORTER.can_open(log) and not IMPORTER.can_open(other)
