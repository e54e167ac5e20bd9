"""Nested class-proportional subsets (property test and the real IMDB labels) and subset sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.tasks.pruning import class_proportional_order, subset_size


def assert_prefixes_class_proportional(labels: np.ndarray, order: np.ndarray) -> None:
    """Every prefix order[:n] holds c_k(n) of class k with |c_k(n) - n N_k / N| < 1."""
    total = len(labels)
    assert sorted(order.tolist()) == list(range(total))  # a permutation: nested by construction
    classes, counts = np.unique(labels, return_counts=True)
    n = np.arange(1, total + 1)
    for k, n_k in zip(classes, counts, strict=True):
        taken = np.cumsum(labels[order] == k)
        # Integer form of |c_k(n) - n N_k / N| < 1.
        assert np.all(np.abs(taken * total - n * n_k) < total), f"class {k} left its quota"


@settings(max_examples=150, deadline=None)
@given(
    labels=st.lists(st.integers(0, 5), min_size=1, max_size=300),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_prefix_is_class_proportional(labels, seed):
    labels = np.array(labels)
    assert_prefixes_class_proportional(labels, class_proportional_order(labels, seed))


@settings(max_examples=50, deadline=None)
@given(
    n_major=st.integers(1, 400),
    n_minor=st.lists(st.integers(1, 7), min_size=1, max_size=6),
    seed=st.integers(0, 1000),
)
def test_skewed_classes_keep_their_quota(n_major, n_minor, seed):
    # Rare classes next to a large one are where greedy "largest deficit" schedules go wrong.
    labels = np.repeat(np.arange(len(n_minor) + 1), [n_major, *n_minor])
    assert_prefixes_class_proportional(labels, class_proportional_order(labels, seed))


@settings(max_examples=30, deadline=None)
@given(
    labels=st.lists(st.integers(0, 3), min_size=2, max_size=200),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_seeded_and_nested_across_sizes(labels, seed, data):
    labels = np.array(labels)
    order = class_proportional_order(labels, [7, seed])
    assert np.array_equal(order, class_proportional_order(labels, [7, seed]))
    n1 = data.draw(st.integers(1, len(labels)))
    n2 = data.draw(st.integers(n1, len(labels)))
    assert set(order[:n1].tolist()) <= set(order[:n2].tolist())


def test_seeds_draw_different_samples_with_the_same_class_counts():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    a, b = class_proportional_order(labels, [0, 1]), class_proportional_order(labels, [0, 2])
    assert not np.array_equal(a[:40], b[:40])
    assert np.array_equal(np.bincount(labels[a[:40]]), np.bincount(labels[b[:40]]))
    assert np.bincount(labels[a[:40]]).tolist() == [20, 12, 8]


def test_real_imdb_train_labels(shared_data):
    pq = pytest.importorskip("pyarrow.parquet")
    labels = pq.read_table(shared_data / "imdb" / "train.parquet", columns=["label"])
    labels = labels.column("label").to_numpy()
    order = class_proportional_order(labels, [0, 3])
    assert_prefixes_class_proportional(labels, order)
    # The file is sorted neg then pos; a balanced subset of 2500 is exactly half each.
    assert np.bincount(labels[order[:2500]]).tolist() == [1250, 1250]
    assert np.bincount(labels[order[:2501]]).max() == 1251


def test_subset_size_counts_and_fractions():
    assert subset_size(100, n_samples=100) == 100
    assert subset_size(25000, fraction=0.1) == 2500
    assert subset_size(5, fraction=0.5) == 3  # 2.5 rounds half up
    assert subset_size(7, fraction=0.01) == 1  # never empty
    assert subset_size(7, fraction=1.0) == 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 101}, r"n_samples = 101 exceeds the train split of 100 samples"),
        ({"n_samples": 0}, r"n_samples = 0 must be at least 1"),
        ({"fraction": 0.0}, r"data_fraction = 0.0 must lie in \(0, 1\]"),
        ({"fraction": 1.5}, r"data_fraction = 1.5 must lie in \(0, 1\]"),
        ({}, r"exactly one of n_samples and data_fraction"),
        ({"n_samples": 5, "fraction": 0.5}, r"exactly one of n_samples and data_fraction"),
    ],
)
def test_subset_size_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        subset_size(100, **kwargs)
