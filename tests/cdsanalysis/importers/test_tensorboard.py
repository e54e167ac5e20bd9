"""The TensorBoard importer on event files written by the real writers.

Tests that need ``torch.utils.tensorboard.SummaryWriter`` skip where torch is not installed (the
analysis-only venv); the rest use TensorBoard's own writers (``tensorboard.summary.Writer``,
``EventFileWriter`` + ``histogram_pb``), which need only the ``tensorboard`` package.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import data_ingester, plugin_event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.summary import Writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from cdsanalysis.importers.tensorboard import IMPORTER


def _runs(source: Path, **options) -> dict:
    return {run.name: run for run in IMPORTER.read_runs(source, options)}


def _summary_writer(logdir: Path):
    tensorboard_module = pytest.importorskip("torch.utils.tensorboard")
    return tensorboard_module.SummaryWriter(str(logdir))


def _f32(values) -> np.ndarray:
    """What a float32 ``simple_value`` holds, as float64."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def test_all_20000_steps_are_read_where_tensorboards_default_keeps_1000(tmp_path):
    n_steps = 20_000
    writer = _summary_writer(tmp_path / "run")
    for step in range(1, n_steps + 1):
        writer.add_scalar("train/loss", 1.0 / step, step)
    writer.close()

    series = _runs(tmp_path)["run"].scalars["train/loss"]
    np.testing.assert_array_equal(series.steps, np.arange(1, n_steps + 1))
    np.testing.assert_array_equal(series.values, _f32(1.0 / np.arange(1, n_steps + 1)))

    # The contrast: TensorBoard's own loading defaults (what its UI shows) keep 1,000 samples.
    default = plugin_event_accumulator.EventAccumulator(
        str(tmp_path / "run"),
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    default.Reload()
    assert len(default.Tensors("train/loss")) == 1_000


def test_matches_tensorboards_accumulator_with_size_guidance_0(tmp_path):
    writer = _summary_writer(tmp_path / "run")
    rng = np.random.default_rng(0)
    for step in range(1, 301):
        writer.add_scalar("train/accuracy", rng.random(), step)
        if step % 10 == 1:  # sparse: evaluated every 10 steps
            writer.add_scalar("test/accuracy", rng.random(), step)
            writer.add_scalar("norm", rng.random() * 100, step, new_style=True)
    writer.close()

    everything = plugin_event_accumulator.EventAccumulator(
        str(tmp_path / "run"), size_guidance={"tensors": 0}
    )
    everything.Reload()
    run = _runs(tmp_path)["run"]
    assert set(run.scalars) == {"train/accuracy", "test/accuracy", "norm"}
    for tag, series in run.scalars.items():
        events = everything.Tensors(tag)
        np.testing.assert_array_equal(series.steps, [e.step for e in events])
        expected = [tensor_util.make_ndarray(e.tensor_proto).item() for e in events]
        np.testing.assert_array_equal(series.values, expected)
    assert len(run.scalars["test/accuracy"].steps) == 30


def test_tensor_encoded_scalars_from_tensorboards_own_writer(tmp_path):
    writer = Writer(str(tmp_path / "run"))
    for step in (1, 2, 5):
        writer.add_scalar("loss", step / 3, step=step)
    writer.close()

    series = _runs(tmp_path)["run"].scalars["loss"]
    np.testing.assert_array_equal(series.steps, [1, 2, 5])
    np.testing.assert_array_equal(series.values, _f32([1 / 3, 2 / 3, 5 / 3]))


def test_histogram_round_trip_from_summary_writer(tmp_path):
    writer = _summary_writer(tmp_path / "run")
    writer.add_histogram("weights/mlp", np.array([0.5, 1.5, 1.5, 2.5]), 3, bins=np.arange(4.0))
    writer.add_histogram("weights/mlp", np.array([2.5, 2.5]), 7, bins=np.arange(4.0))
    writer.close()

    histogram = _runs(tmp_path)["run"].histograms["weights/mlp"]
    np.testing.assert_array_equal(histogram.steps, [3, 7])
    # np.histogram buckets [0,1) [1,2) [2,3]; SummaryWriter stores right edges only and puts an
    # empty bucket first, ending at the first edge of the support.
    np.testing.assert_array_equal(histogram.edges[0], [0.0, 0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(histogram.counts[0], [0, 1, 2, 1])
    np.testing.assert_array_equal(histogram.edges[1], [2.0, 2.0, 3.0])
    np.testing.assert_array_equal(histogram.counts[1], [0, 2])


def test_histogram_plugin_tensors(tmp_path):
    writer = EventFileWriter(str(tmp_path / "run"))
    summary = histogram_pb("weights", np.array([0.0, 1.0, 1.0, 3.0]), buckets=3)
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=4, summary=summary))
    writer.close()

    histogram = _runs(tmp_path)["run"].histograms["weights"]
    np.testing.assert_array_equal(histogram.steps, [4])
    np.testing.assert_array_equal(histogram.edges[0], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(histogram.counts[0], [1, 2, 1])


def test_hparams_become_typed_config_of_the_run(tmp_path):
    writer = _summary_writer(tmp_path / "run")
    writer.add_scalar("loss", 0.5, 1)
    hparams = {"lr": 0.001, "n_samples": 2000, "optimizer": "adamw", "tied": True}
    writer.add_hparams(hparams, {"hparam/final_loss": 0.25})  # writes into run/<time.time()>/
    writer.close()

    runs = _runs(tmp_path)
    assert list(runs) == ["run"]  # the add_hparams sub-directory is folded into its run
    config = runs["run"].config
    assert config == hparams
    assert type(config["n_samples"]) is int and type(config["lr"]) is float
    assert set(runs["run"].scalars) == {"loss", "hparam/final_loss"}


def test_restarted_run_merges_its_event_files(tmp_path):
    writer = Writer(str(tmp_path / "run"))
    for step in range(1, 11):
        writer.add_scalar("loss", 1.0 / step, step=step)
    writer.close()
    writer = Writer(str(tmp_path / "run"))
    for step in range(8, 16):  # resumed from step 8: 8-10 logged again with equal values
        writer.add_scalar("loss", 1.0 / step, step=step)
    writer.close()

    run = _runs(tmp_path)["run"]
    assert len(run.sources) == 2
    np.testing.assert_array_equal(run.scalars["loss"].steps, np.arange(1, 16))
    np.testing.assert_array_equal(run.scalars["loss"].values, _f32(1.0 / np.arange(1, 16)))


def test_conflicting_duplicate_steps_name_the_files_tag_and_step(tmp_path):
    for values in ({1: 0.5, 2: 0.25}, {2: 0.75, 3: 0.1}):
        writer = Writer(str(tmp_path / "run"))
        for step, value in values.items():
            writer.add_scalar("loss", value, step=step)
        writer.close()
    files = sorted(p.name for p in (tmp_path / "run").iterdir())

    with pytest.raises(ValueError, match="'loss' step 2") as error:
        _runs(tmp_path)
    assert files[0] in str(error.value) and files[1] in str(error.value)


def test_step_offset_shifts_zero_based_steps(tmp_path):
    writer = Writer(str(tmp_path / "run"))
    for step in range(3):
        writer.add_scalar("loss", 1.0, step=step)
    writer.close()

    steps = _runs(tmp_path, step_offset=1)["run"].scalars["loss"].steps
    np.testing.assert_array_equal(steps, [1, 2, 3])


def test_nested_run_directories_and_single_files(tmp_path, monkeypatch):
    for name in ("grid/a/seed0", "grid/b"):
        writer = Writer(str(tmp_path / name))
        writer.add_scalar("loss", 1.0, step=1)
        writer.close()
    (tmp_path / "empty").mkdir()

    assert IMPORTER.can_open(tmp_path / "grid")
    assert not IMPORTER.can_open(tmp_path / "empty")
    assert list(_runs(tmp_path / "grid")) == ["a/seed0", "b"]
    event_file = next((tmp_path / "grid" / "b").iterdir())
    assert IMPORTER.can_open(event_file)
    assert list(_runs(event_file)) == ["b"]
    monkeypatch.chdir(tmp_path / "grid" / "b")
    assert list(_runs(Path("."))) == ["b"]  # a run directory given as "." keeps its own name
    with pytest.raises(ValueError, match="no TensorBoard event files"):
        _runs(tmp_path / "empty")


def test_truncated_tail_is_ignored_and_corrupt_records_are_named(tmp_path):
    writer = Writer(str(tmp_path / "run"))
    for step in range(1, 4):
        writer.add_scalar("loss", float(step), step=step)
    writer.close()
    event_file = next((tmp_path / "run").iterdir())
    intact = event_file.read_bytes()

    event_file.write_bytes(intact[:-5])  # the writer died inside the last record
    np.testing.assert_array_equal(_runs(tmp_path)["run"].scalars["loss"].steps, [1, 2])

    corrupt = bytearray(intact)
    corrupt[-10] ^= 0xFF  # a flipped bit inside the last record's payload
    event_file.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=f"{event_file.name}: byte \\d+: corrupt record"):
        _runs(tmp_path)
