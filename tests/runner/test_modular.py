from __future__ import annotations

import numpy as np

from runner.spec import ModularAdditionTask
from runner.tasks.modular import all_pairs, load_modular, split_indices, token_ids


def test_authors_format_and_sizes_for_p113():
    task = ModularAdditionTask(p=113)
    assert task.vocab_size == 117
    assert (task.n_train, task.n_pairs - task.n_train) == (9576, 3193)
    inputs, targets = all_pairs(113)
    ids = token_ids(113)
    a, b = 57, 99
    row = inputs[a * 113 + b]
    assert row.tolist() == [a, ids["+"], b, ids["%"], 113, ids["="]]
    assert targets[a * 113 + b] == 43  # 57 + 99 = 156 = 113 + 43
    assert inputs.max() < task.vocab_size


def test_split_is_a_partition_and_seeded():
    task = ModularAdditionTask(p=23, split_seed=3)
    train, test = split_indices(task)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == 23 * 23
    again, _ = split_indices(task)
    assert np.array_equal(train, again)
    other, _ = split_indices(ModularAdditionTask(p=23, split_seed=4))
    assert not np.array_equal(train, other)


def _rows(data):
    return {tuple(r) for r in data.train_inputs.tolist()}


def test_subsets_are_nested_per_seed_and_differ_across_seeds():
    task = ModularAdditionTask(p=23)
    small, large = load_modular(task, 100, seed=1), load_modular(task, 300, seed=1)
    assert _rows(small) < _rows(large)
    assert _rows(small) != _rows(load_modular(task, 100, seed=2))
    # The test split never changes with n or seed.
    assert np.array_equal(small.test_inputs, load_modular(task, 50, seed=7).test_inputs)
    _, test = split_indices(task)
    assert len(large.test_inputs) == len(test)
    assert not _rows(large) & {tuple(r) for r in large.test_inputs.tolist()}
