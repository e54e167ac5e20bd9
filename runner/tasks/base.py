"""What every task hands the trainer: a classification problem as arrays.

The trainer and the models see only this: feature arrays keyed by name (``input_ids`` of shape
(n, L) for every task; ``attention_mask`` of the same shape for padded text) and integer labels.
Models return logits of shape (n, n_outputs) with n_outputs >= n_classes; accuracy is the argmax
over the first ``n_classes`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassificationData:
    train_features: dict[str, np.ndarray]  # int64 arrays of shape (n_train, L)
    train_labels: np.ndarray  # int64 (n_train,)
    test_features: dict[str, np.ndarray]  # int64 arrays of shape (n_test, L)
    test_labels: np.ndarray  # int64 (n_test,)
    n_classes: int  # classes counted by accuracy (columns 0..n_classes-1 of the logits)
    vocab_size: int  # token ids lie in [0, vocab_size)
    pad_token_id: int | None = None  # None when inputs are never padded

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    @property
    def n_test(self) -> int:
        return len(self.test_labels)

    @property
    def chance_accuracy(self) -> float:
        """Accuracy (fraction) of always answering the most frequent class of the test labels
        (the evaluated test set: the test split, or its eval subset).

        The majority share, not ``1 / n_classes``: on an imbalanced test set (70/30) always
        answering the larger class scores 0.7, so that, not 0.5, is the floor of test accuracy.
        NaN for an empty test set."""
        if len(self.test_labels) == 0:
            return float("nan")
        return float(np.bincount(self.test_labels).max() / len(self.test_labels))
