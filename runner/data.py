"""Task data for one run, as :class:`~runner.tasks.base.ClassificationData`, whatever the task."""

from __future__ import annotations

import numpy as np

from runner.spec import ModularAdditionTask, RunSpec
from runner.tasks.base import ClassificationData
from runner.tasks.pruning import class_proportional_order

#: Stream of the train-set measurement subset's draw, ``[seed, TRAIN_SET_STREAM]``: apart from
#: the minibatch orders ``[seed, 2, epoch]`` and the noise generator ``[seed, 1]``.
TRAIN_SET_STREAM = 3


def load_task_data(spec: RunSpec) -> ClassificationData:
    """The run's training subset (nested in n for one seed) and its test set."""
    n_samples = spec.resolved_n_samples()
    if isinstance(spec.task, ModularAdditionTask):
        from runner.tasks.modular import load_modular

        data = load_modular(spec.task, n_samples, spec.seed)
        task = spec.task
        return ClassificationData(
            train_features={"input_ids": data.train_inputs},
            train_labels=data.train_targets,
            test_features={"input_ids": data.test_inputs},
            test_labels=data.test_targets,
            n_classes=task.p if task.accuracy_over == "residues" else task.vocab_size,
            vocab_size=task.vocab_size,
            pad_token_id=None,
        )
    from runner.tasks.text import load_text_task

    return load_text_task(spec.task, n_samples, spec.seed)


def task_classes(spec: RunSpec, data: ClassificationData) -> int:
    """Classes of the run's task, as the store records them (``n_classes``): ``p`` for modular
    addition (the residues, whatever ``accuracy_over`` makes accuracy count over), the label
    classes of a text task."""
    if isinstance(spec.task, ModularAdditionTask):
        return spec.task.p
    return data.n_classes


def train_set_positions(spec: RunSpec, train_labels: np.ndarray) -> np.ndarray | None:
    """Rows of the training subset that ``train_set_accuracy`` is measured on (sorted), or None
    when it is not measured (a full-batch run: its train metrics already cover every row).

    All rows, or, when ``spec.train_eval_subset`` caps them, the first ``train_eval_subset`` of
    a seeded class-proportional order of the rows (:func:`class_proportional_order`, as the
    test split's ``eval_subset``): fixed for the run, so every evaluation sees the same samples.
    """
    size = spec.train_set_samples()
    if size == 0:
        return None
    if size == len(train_labels):
        return np.arange(size)
    order = class_proportional_order(train_labels, [spec.seed, TRAIN_SET_STREAM])
    return np.sort(order[:size])
