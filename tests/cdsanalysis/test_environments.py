"""What the runs of a store trained on: counts, the line, the warning of a mixed store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdsanalysis.environments import (
    NOT_RECORDED,
    describe,
    environment_counts,
    environment_line,
)
from cdsanalysis.report import regimes_report
from cdsanalysis.store import open_runs
from runner.environment import training_environment
from runner.store import RunStore
from tests.cdsanalysis.conftest import Curves, write_store

STEPS = 100
MIXED = "the runs trained on 2 environments"


def _environment(threads: int) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return training_environment(torch.device("cpu"), "sequential")
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def planted(tmp_path):
    """Two sizes x two seeds, one more run still pending; environments recorded by ``record``
    (run index -> list of thread counts, one environment per attempt)."""
    c = Curves()
    runs = {(n, s): c.run(STEPS, 11, 41 if n == 200 else None) for n in (100, 200) for s in (0, 1)}
    runs[(300, 0)] = c.with_state(c.run(STEPS, 11, 41), "pending", 0)
    path = write_store(tmp_path / "s.zarr", runs, STEPS)

    def record(threads_of: dict[int, list[int]]):
        store = RunStore(path)
        for index, attempts in threads_of.items():
            for threads in attempts:
                store.record_environment(index, _environment(threads))
        return open_runs(str(path))

    return record


def _index(ds, n, seed) -> int:
    return int(np.argmax((ds.n_samples.values == n) & (ds.seed.values == seed)))


def test_one_environment_is_counted_and_raises_no_warning(planted):
    ds = planted({})
    ds = planted({i: [1] for i in range(ds.sizes["run"]) if str(ds.status[i].values) == "done"})
    counts = environment_counts(ds)
    assert [c["n_runs"] for c in counts] == [4]
    assert ", 1 torch thread)" in counts[0]["description"]
    assert f"torch {torch.__version__}" in counts[0]["description"]
    assert environment_line(counts) == f"Trained on: 4 runs: {counts[0]['description']}"
    report = regimes_report(ds, n_resamples=50)
    assert not any(MIXED in w for w in report["warnings"])
    assert report["store"]["environments"] == counts


def test_runs_from_two_environments_are_warned(planted):
    ds = planted({})
    ds = planted({_index(ds, n, s): [1 + s] for n in (100, 200) for s in (0, 1)})
    counts = environment_counts(ds)
    assert sorted(c["n_runs"] for c in counts) == [2, 2]
    report = regimes_report(ds, n_resamples=50)
    assert any(MIXED in w for w in report["warnings"])


def test_a_run_resumed_elsewhere_counts_under_both(planted):
    ds = planted({})
    ds = planted({_index(ds, 100, 0): [1, 2], _index(ds, 100, 1): [1]})
    counts = {c["description"]: c["n_runs"] for c in environment_counts(ds)}
    assert counts[describe(_environment(1))] == 2
    assert counts[describe(_environment(2))] == 1
    assert "2 torch threads)" in describe(_environment(2))
    assert counts[NOT_RECORDED] == 2  # the two n = 200 runs; the pending run is not counted


def test_a_store_without_records_counts_started_runs_as_not_recorded(planted):
    ds = planted({})
    assert environment_counts(ds) == [{"description": NOT_RECORDED, "n_runs": 4}]
    assert not any(MIXED in w for w in regimes_report(ds, n_resamples=50)["warnings"])
