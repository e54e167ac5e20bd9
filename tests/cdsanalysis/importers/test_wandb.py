"""The W&B importer on history exports written by pandas with W&B's column names and config format.

The online path (``wandb://ENTITY/PROJECT``) needs the network and an account; only its error
without the ``wandb`` client is tested.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdsanalysis.importers.wandb import IMPORTER

# config.yaml exactly as the W&B client writes it into a run's files
CONFIG_YAML = """\
wandb_version: 1

_wandb:
  desc: null
  value:
    cli_version: 0.16.0
    framework: torch
    is_jupyter_run: false
    python_version: 3.11.4
    start_time: 1700000000.0
    t:
      1:
      - 1
      - 55
lr:
  desc: null
  value: 0.001
n_samples:
  desc: null
  value: 2000
model:
  desc: null
  value: mlp
optimizer:
  desc: null
  value:
    name: adamw
    weight_decay: 1.0
"""


def _history(n_steps: int, eval_every: int) -> pd.DataFrame:
    """A scan_history() export: one row per step; test metrics only on evaluation steps."""
    steps = np.arange(n_steps)
    evaluated = steps % eval_every == 0
    return pd.DataFrame(
        {
            "_step": steps,
            "_runtime": steps * 0.5,
            "_timestamp": 1.7e9 + steps * 0.5,
            "train/loss": 1.0 / (steps + 1),
            "test/accuracy": np.where(evaluated, steps / n_steps, np.nan),
            "samples": [f"<table {s}>" for s in steps],  # a non-numeric column
        }
    )


def _runs(source, **options) -> dict:
    return {run.name: run for run in IMPORTER.read_runs(source, options)}


def test_csv_export_with_wandb_config_yaml(tmp_path):
    run_dir = tmp_path / "export" / "3xk9q2ab"
    run_dir.mkdir(parents=True)
    _history(50, eval_every=10).to_csv(run_dir / "history.csv", index=False)
    (run_dir / "config.yaml").write_text(CONFIG_YAML)

    run = _runs(tmp_path / "export")["3xk9q2ab"]
    assert run.config == {
        "lr": 0.001,
        "n_samples": 2000,
        "model": "mlp",
        "optimizer.name": "adamw",
        "optimizer.weight_decay": 1.0,
    }
    assert type(run.config["n_samples"]) is int
    assert set(run.scalars) == {"train/loss", "test/accuracy"}  # no _runtime, _timestamp, samples
    np.testing.assert_array_equal(run.scalars["train/loss"].steps, np.arange(50))
    np.testing.assert_array_equal(run.scalars["train/loss"].values, 1.0 / np.arange(1, 51))
    # NaN-sparse column: only the logged (evaluation) steps
    np.testing.assert_array_equal(run.scalars["test/accuracy"].steps, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(run.scalars["test/accuracy"].values, [0, 0.2, 0.4, 0.6, 0.8])
    assert run.sources == (str(run_dir / "history.csv"), str(run_dir / "config.yaml"))


def test_parquet_export_with_plain_config_json_and_step_offset(tmp_path):
    run_dir = tmp_path / "export" / "run-b"
    run_dir.mkdir(parents=True)
    _history(20, eval_every=5).to_parquet(run_dir / "history.parquet")
    (run_dir / "config.json").write_text(json.dumps({"lr": 0.01, "seed": 3, "_wandb": {"x": 1}}))

    run = _runs(tmp_path / "export", step_offset=1)["run-b"]
    assert run.config == {"lr": 0.01, "seed": 3}
    np.testing.assert_array_equal(run.scalars["test/accuracy"].steps, [1, 6, 11, 16])


def test_several_runs_and_a_single_history_file(tmp_path):
    for run_id in ("b2", "a1"):
        (tmp_path / run_id).mkdir()
        _history(5, eval_every=2).to_csv(tmp_path / run_id / "history.csv", index=False)

    assert IMPORTER.can_open(tmp_path)
    assert list(_runs(tmp_path)) == ["a1", "b2"]
    assert IMPORTER.can_open(tmp_path / "a1" / "history.csv")
    assert list(_runs(tmp_path / "a1" / "history.csv")) == ["a1"]
    assert _runs(tmp_path / "a1")["a1"].config == {}


def test_custom_step_column_merges_rows_of_one_step(tmp_path):
    # wandb.log called twice per step without step=: _step counts calls, the step is a metric
    history = pd.DataFrame(
        {
            "_step": [0, 1, 2, 3],
            "trainer/global_step": [1, 1, 2, 2],
            "train/loss": [0.9, np.nan, 0.8, np.nan],
            "test/accuracy": [np.nan, 0.1, np.nan, 0.3],
        }
    )
    history.to_csv(tmp_path / "history.csv", index=False)

    run = _runs(tmp_path / "history.csv", step_column="trainer/global_step")[tmp_path.name]
    np.testing.assert_array_equal(run.scalars["train/loss"].steps, [1, 2])
    np.testing.assert_array_equal(run.scalars["test/accuracy"].values, [0.1, 0.3])
    assert "_step" not in run.scalars


def test_conflicting_duplicate_step_names_file_column_and_step(tmp_path):
    history = pd.DataFrame({"_step": [0, 1, 1], "train/loss": [0.5, 0.4, 0.3]})
    history.to_csv(tmp_path / "history.csv", index=False)

    with pytest.raises(ValueError, match=r"history\.csv: column 'train/loss': step 1 logged twice"):
        _runs(tmp_path)


def test_non_integer_step_names_the_row(tmp_path):
    history = pd.DataFrame({"_step": [0, 1.5], "train/loss": [0.5, 0.4]})
    history.to_csv(tmp_path / "history.csv", index=False)

    with pytest.raises(ValueError, match=r"history\.csv: column '_step' row 1 \(line 3"):
        _runs(tmp_path)


def test_bad_config_yaml_is_named(tmp_path):
    _history(3, eval_every=1).to_csv(tmp_path / "history.csv", index=False)
    (tmp_path / "config.yaml").write_text("lr: [unclosed\n")

    with pytest.raises(ValueError, match=r"config\.yaml: not valid YAML"):
        _runs(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_online_source_without_the_wandb_client_says_what_to_install():
    assert IMPORTER.can_open(Path("wandb://team/grokking"))
    with pytest.raises(ImportError, match="pip install wandb"):
        _runs(Path("wandb://team/grokking"))
