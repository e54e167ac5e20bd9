"""Uniform data pruning: nested, class-proportional, seeded training subsets.

The data-size axis of a grid must change one thing only: how many samples the model sees. So the
subset of size n is the first n entries of one order of the train split, drawn once per seed
(subsets are nested: n1 < n2 gives a subset of the n2 subset), and every prefix of that order is
class-proportional: for every n and class k the count c_k(n) of class k among the first n
positions satisfies |c_k(n) - n * N_k / N| < 1 (N_k samples of class k out of N).

Why not "shuffle within each class and allocate largest remainders for each n": largest-remainder
allocation per n is not monotone in n (the Alabama paradox), so its subsets would not nest. Here
the class sequence is built once as a schedule: the j-th sample of class k may be taken at
position t (1-based) only while the bounds above hold for every prefix, i.e. inside the window
``floor((j - 1) N / N_k) + 1 <= t <= ceil(j N / N_k)``. Unit jobs with integer release times and
deadlines are scheduled by earliest deadline first, which finds a schedule whenever one exists,
and one always exists (Tijdeman 1980, "The chairman assignment problem": discrepancy
<= 1 - 1/(2K - 2) for K classes). Which samples of a class are taken is a seeded permutation.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np


def _class_schedule(counts: np.ndarray) -> np.ndarray:
    """Class index at every position 0..N-1 (see the module docstring); exact integer arithmetic."""
    total = int(counts.sum())
    jobs = []  # (release, deadline, class), 1-based positions
    for k, n_k in enumerate(counts.tolist()):
        for j in range(1, n_k + 1):
            jobs.append(((j - 1) * total // n_k + 1, -(-j * total // n_k), k))
    jobs.sort()
    schedule = np.empty(total, dtype=np.int64)
    ready: list[tuple[int, int]] = []  # (deadline, class)
    next_job = 0
    for t in range(1, total + 1):
        while next_job < len(jobs) and jobs[next_job][0] <= t:
            heapq.heappush(ready, (jobs[next_job][1], jobs[next_job][2]))
            next_job += 1
        deadline, k = heapq.heappop(ready)
        # Cannot happen (a schedule always exists and EDF finds it); kept as a guard on the proof.
        assert deadline >= t, "class schedule missed a deadline"
        schedule[t - 1] = k
    return schedule


def class_proportional_order(labels: np.ndarray, seed: int | Sequence[int]) -> np.ndarray:
    """Positions of ``labels`` in the order nested class-proportional subsets take them.

    Parameters
    ----------
    labels
        Integer class ids, shape (N,); any non-negative values (classes absent from ``labels``
        simply never occur).
    seed
        Seed of ``np.random.default_rng`` (an int or a sequence such as ``[split_seed, seed]``);
        independent of torch. It picks which samples of each class come first; the class sequence
        itself depends only on the class counts.

    Returns
    -------
    np.ndarray
        int64 permutation of ``range(N)``. For every n, ``order[:n]`` holds, of each class k,
        c_k(n) samples with ``|c_k(n) - n * N_k / N| < 1``, and ``order[:n1]`` lies inside
        ``order[:n2]`` for n1 < n2.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) == 0:
        return np.empty(0, dtype=np.int64)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    # One seeded permutation per class, in class order, so the draw does not depend on N's layout.
    members = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(classes))]
    schedule = _class_schedule(counts)
    order = np.empty(len(labels), dtype=np.int64)
    for k in range(len(classes)):
        order[schedule == k] = members[k]
    return order


def subset_size(
    n_available: int, n_samples: int | None = None, fraction: float | None = None
) -> int:
    """The training-subset size for an absolute count or a fraction of the train split.

    Parameters
    ----------
    n_available
        Size of the train split (samples).
    n_samples
        Absolute subset size (samples), 1 <= n_samples <= n_available.
    fraction
        Fraction of the train split in (0, 1]; the size is ``floor(fraction * n_available + 0.5)``
        (round half up, unlike Python's ``round``, which rounds half to even) and at least 1.

    Exactly one of ``n_samples`` and ``fraction`` must be given.

    Returns
    -------
    int
        The subset size (samples). Whether every class is present in a subset this small is
        checked where the labels are known (:func:`runner.tasks.text.load_text_task`).
    """
    if (n_samples is None) == (fraction is None):
        raise ValueError("give exactly one of n_samples and data_fraction")
    if n_samples is not None:
        if n_samples < 1:
            raise ValueError(f"n_samples = {n_samples} must be at least 1")
        if n_samples > n_available:
            raise ValueError(
                f"n_samples = {n_samples} exceeds the train split of {n_available} samples; "
                f"lower n_samples to at most {n_available}"
            )
        return int(n_samples)
    assert fraction is not None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"data_fraction = {fraction} must lie in (0, 1] (a fraction of the "
            f"{n_available} training samples)"
        )
    return max(1, int(np.floor(fraction * n_available + 0.5)))
