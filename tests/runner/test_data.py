"""The rows a minibatch run measures its training-set accuracy on (runner/data.py)."""

from __future__ import annotations

import numpy as np

from runner.data import load_task_data, train_set_positions
from runner.spec import RunSpec


def _spec(**fields) -> RunSpec:
    return RunSpec.model_validate({"task": {"p": 11}, "n_samples": 80, "steps": 1, **fields})


def test_full_batch_runs_measure_no_train_set():
    labels = load_task_data(_spec()).train_labels
    assert train_set_positions(_spec(), labels) is None
    assert train_set_positions(_spec(batch_size=80), labels) is None  # one batch is everything
    assert _spec(batch_size=80).train_set_samples() == 0


def test_minibatch_runs_measure_every_training_row_without_a_cap():
    labels = load_task_data(_spec()).train_labels
    for cap in (None, 80, 500):  # a cap at or above n takes every row
        rows = train_set_positions(_spec(batch_size=16, train_eval_subset=cap), labels)
        assert rows.tolist() == list(range(80))


def test_a_capped_train_set_is_a_fixed_class_proportional_subset():
    spec = _spec(batch_size=16, train_eval_subset=30, seed=3)
    labels = load_task_data(spec).train_labels
    rows = train_set_positions(spec, labels)
    assert spec.train_set_samples() == 30 and len(rows) == 30
    assert len(set(rows.tolist())) == 30 and (np.diff(rows) > 0).all() and rows.max() < 80
    # every class within one sample of its share of the 80 rows (counted by hand below)
    counts = np.bincount(labels, minlength=11)
    taken = np.bincount(labels[rows], minlength=11)
    assert (np.abs(taken - 30 * counts / 80) < 1).all()
    # fixed: the same rows every time; another seed draws others
    assert train_set_positions(spec, labels).tolist() == rows.tolist()
    other = _spec(batch_size=16, train_eval_subset=30, seed=4)
    assert train_set_positions(other, load_task_data(other).train_labels).tolist() != rows.tolist()
