"""Modular addition in the authors' text format.

Every pair (a, b) with 0 <= a, b < p becomes the 7-token sequence ``a + b % p = c`` with
c = (a + b) mod p. Token ids: the numbers 0..p are ids 0..p, then '+', '%', '=' (p + 4 tokens,
117 for p = 113). Only the answer is trained: the model reads the first 6 tokens and its output at
the '=' position must be c. (Feeding the 7th token as well, as the authors do, changes nothing:
attention is causal, so position 6 never influences the prediction at position 5.)

Split and subsets are seeded and independent of torch: one shuffle of all p^2 pairs with
``split_seed`` gives the train / test split; the training subset of size n is the first n entries
of a permutation of the train split drawn from ``seed``, so for one seed the subsets are nested
(n = 1000 lies inside n = 2000) and only the data size changes along the n axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runner.spec import ModularAdditionTask

#: Length of the model input (the answer token is not fed).
INPUT_TOKENS = 6


def token_ids(p: int) -> dict[str, int]:
    return {"+": p + 1, "%": p + 2, "=": p + 3}


def all_pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (p^2, 6) int64 ``[a, +, b, %, p, =]`` and targets (p^2,) int64 ``(a + b) % p``."""
    ids = token_ids(p)
    a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
    inputs = np.stack(
        [
            a,
            np.full_like(a, ids["+"]),
            b,
            np.full_like(a, ids["%"]),
            np.full_like(a, p),
            np.full_like(a, ids["="]),
        ],
        axis=1,
    )
    return inputs, (a + b) % p


def split_indices(task: ModularAdditionTask) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into :func:`all_pairs`) of the train and test split."""
    order = np.random.default_rng(task.split_seed).permutation(task.n_pairs)
    return order[: task.n_train], order[task.n_train :]


def subset_order(task: ModularAdditionTask, seed: int) -> np.ndarray:
    """Positions within the train split, in the order subsets take them (nested by design)."""
    return np.random.default_rng([task.split_seed, seed]).permutation(task.n_train)


@dataclass(frozen=True)
class ModularData:
    train_inputs: np.ndarray
    train_targets: np.ndarray
    test_inputs: np.ndarray
    test_targets: np.ndarray


def load_modular(task: ModularAdditionTask, n_samples: int, seed: int) -> ModularData:
    """The n-sample training subset for ``seed`` and the full test split."""
    if n_samples > task.n_train:
        raise ValueError(f"n_samples = {n_samples} exceeds the train split ({task.n_train})")
    inputs, targets = all_pairs(task.p)
    train, test = split_indices(task)
    chosen = train[subset_order(task, seed)[:n_samples]]
    return ModularData(inputs[chosen], targets[chosen], inputs[test], targets[test])
