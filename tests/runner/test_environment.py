"""What each run records about the software and hardware it trained on (``environment_json``)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from cdsanalysis import open_runs, validate_store
from runner.batched import train_group
from runner.environment import data_sha256, training_environment
from runner.grid import load_grid
from runner.store import RunStore
from runner.tasks.base import ClassificationData
from runner.trainer import RunInterrupted, train_run


@pytest.fixture
def threads():
    """Set torch's thread count inside a test and restore it after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _stored(store_path) -> list[list[dict]]:
    ds = open_runs(store_path)
    return [json.loads(str(text)) if str(text) else [] for text in ds["environment_json"].values]


def test_the_environment_names_the_builds_the_cpu_unit_and_the_threads(threads):
    threads(1)
    environment = training_environment(torch.device("cpu"), "sequential")
    assert environment["torch"] == torch.__version__
    assert environment["numpy"] == np.__version__
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["torch_threads"] == 1
    assert environment["device"] == "cpu" and environment["device_name"] == environment["cpu"]
    assert environment["cpu"]
    assert socket.gethostname() not in json.dumps(environment)  # what changes numbers only


def test_a_run_resumed_with_other_threads_lists_both_environments_in_order(
    tiny_grid, tmp_path, threads
):
    grid = load_grid(tiny_grid(steps=40, n_samples="[40]"))
    path = tmp_path / "s.zarr"
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    assert _stored(path) == [[]]  # nothing before the run starts

    threads(1)
    calls = iter(range(1000))
    with pytest.raises(RunInterrupted):
        train_run(store, 0, grid.settings, stop=lambda: next(calls) == 15)
    first = _stored(path)[0]
    assert [e["torch_threads"] for e in first] == [1]
    assert first[0]["trainer"] == "sequential"

    calls = iter(range(1000))
    with pytest.raises(RunInterrupted):  # the same environment again adds nothing
        train_run(RunStore(path), 0, grid.settings, stop=lambda: next(calls) == 5)
    assert _stored(path)[0] == first

    threads(2)
    assert train_run(RunStore(path), 0, grid.settings) == "done"
    assert [e["torch_threads"] for e in _stored(path)[0]] == [1, 2]
    validate_store(path, deep=True)


def test_runs_trained_together_record_the_batched_trainer(tiny_grid, tmp_path):
    grid = load_grid(tiny_grid(steps=20, n_samples="[40, 80]"))
    path = tmp_path / "b.zarr"
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    assert train_group(store, [0, 1], grid.settings) == {0: "done", 1: "done"}
    trainers = [[e["trainer"] for e in run] for run in _stored(path)]
    assert trainers == [["batched (2 runs)"], ["batched (2 runs)"]]


def test_a_store_written_before_the_field_takes_it_when_a_run_resumes(tiny_grid, tmp_path):
    import zarr

    grid = load_grid(tiny_grid(steps=20, n_samples="[40]"))
    path = tmp_path / "old.zarr"
    RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    root = zarr.open_group(str(path), mode="r+")
    del root["environment_json"]  # as a store written before 2026-12-05
    assert _stored(path) == [[]]  # readers take '' for every run

    assert train_run(RunStore(path), 0, grid.settings) == "done"
    assert len(_stored(path)[0]) == 1


def test_the_data_digest_follows_the_arrays_a_run_is_fed(tiny_grid, tmp_path):
    grid = load_grid(tiny_grid(steps=10, n_samples="[40]", seed="[0, 1]"))
    digests = []
    for name in ("a", "b"):  # the same grid in two stores: the same data, run by run
        path = tmp_path / f"{name}.zarr"
        store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
        for index in range(len(grid.runs)):
            assert train_run(store, index, grid.settings) == "done"
        digests.append([run[-1]["data"] for run in _stored(path)])
    assert digests[0] == digests[1]
    assert digests[0][0] != digests[0][1]  # another seed, another subset
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests[0])


def test_one_changed_token_changes_the_data_digest():
    features = {"input_ids": np.arange(12, dtype=np.int64).reshape(4, 3)}
    labels = np.array([0, 1, 0, 1])

    def digest(train_ids: np.ndarray) -> str:
        data = ClassificationData({"input_ids": train_ids}, labels, features, labels, 2, 12)
        return data_sha256(data)

    changed = features["input_ids"].copy()
    changed[2, 1] = 0
    assert digest(features["input_ids"]) == digest(features["input_ids"].copy())
    assert digest(changed) != digest(features["input_ids"])
    # the same ids in another shape are other data
    assert digest(features["input_ids"].reshape(3, 4)) != digest(features["input_ids"])
