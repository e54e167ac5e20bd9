"""Task data for one run, as :class:`~runner.tasks.base.ClassificationData`, whatever the task."""

from __future__ import annotations

from runner.spec import ModularAdditionTask, RunSpec
from runner.tasks.base import ClassificationData


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
