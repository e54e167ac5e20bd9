"""Train one run into its slot of a run store, resuming after the last flushed step.

Reads top to bottom: build data, model and optimiser from the spec; restore the last checkpoint
if there is one; then per step measure (train metrics from the same forward pass that is
back-propagated, test metrics, norms, histograms) and update. Measurements accumulate on the
device and reach the host only at a flush, every ``flush_every`` steps: metrics block, then
checkpoint, then ``steps_done``, in that order, so a crash at any point leaves a prefix of steps
that a resumed run continues without gap or duplicate. What is measured (:mod:`runner.measuring`)
and how it is flushed and checkpointed (:mod:`runner.recording`) is shared with the batched
trainer (:mod:`runner.batched`), one implementation of each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from runner.data import load_task_data, task_classes, train_set_positions
from runner.deciding import watch_for
from runner.environment import data_sha256, training_environment
from runner.init_from import load_initial_weights
from runner.measuring import (
    HistogramMeter,
    NormMeter,
    SplitMetrics,
    StepMeasurer,
    classification_loss,
    collapse_fraction,
    correct,
    test_metrics,
)
from runner.models.base import Classifier, build_model
from runner.recording import (
    COLLAPSE,
    HELD,
    StepRecord,
    StillMine,
    always_mine,
    checkpoint_bytes,
    load_checkpoint,
)
from runner.spec import ModularAdditionTask, OptimizerSpec, RunSpec, StoreSettings
from runner.store import RunStore


def in_scope(name: str, model: Classifier, scope: str) -> bool:
    """Whether parameter ``name`` of ``model`` is in ``scope``: every parameter (``all``), or
    (``weights``) all but biases and the gains and shifts of norm layers. The one predicate of
    ``alpha_scope`` (what alpha multiplies) and ``optimizer.decay_scope`` (what decays)."""
    if scope == "all":
        return True
    return not (name.endswith("bias") or model.parameter_group(name) == "norm")


def rescale_(model: Classifier, alpha: float, scope: str = "all") -> None:
    """The grokking configuration: multiply the (distinct) parameters in ``scope`` by ``alpha``."""
    if alpha != 1.0:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if in_scope(name, model, scope):
                    param.mul_(alpha)


@dataclass
class RunSetup:
    spec: RunSpec
    model: Classifier
    optimizer: torch.optim.Optimizer
    train: dict[str, torch.Tensor]
    train_y: torch.Tensor
    test: dict[str, torch.Tensor]
    test_y: torch.Tensor
    # Rows train_set_accuracy is measured on (minibatch runs; None: not measured).
    train_set: dict[str, torch.Tensor] | None
    train_set_y: torch.Tensor | None
    n_classes: int  # logits considered for accuracy (columns 0..n_classes-1)
    initial: list[torch.Tensor] | None  # w0 of ``decaying``, kept when decay pulls towards it
    noise: torch.Generator | None  # the noise interventions' own generator
    decaying: list[torch.nn.Parameter]  # the parameters in optimizer.decay_scope
    # What the store records of the task (n_classes, chance_accuracy): its classes and the
    # majority share of the evaluated test set.
    classes: tuple[int, float] = (0, float("nan"))
    data_sha256: str = ""  # runner.environment.data_sha256 of the arrays the run is fed


def build_run(spec: RunSpec, device: torch.device, store: RunStore | None = None) -> RunSetup:
    """Data, model (initialised, rescaled or loaded from ``init_from``) and optimiser."""
    data = load_task_data(spec)
    torch.manual_seed(spec.seed)
    answer_token_head = isinstance(spec.task, ModularAdditionTask) and spec.model.family == "gpt"
    model = build_model(spec.model, data, answer_token_head=answer_token_head).to(device)
    optimizer = make_optimizer(spec.optimizer, model.named_parameters(), model)
    if spec.init_from is None:
        rescale_(model, spec.alpha, spec.alpha_scope)
    else:
        load_initial_weights(model, optimizer, spec, store, device)

    def tensors(features: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=device) for k, v in features.items()}

    scope = spec.optimizer.decay_scope
    decaying = [p for name, p in model.named_parameters() if in_scope(name, model, scope)]
    initial = None
    if spec.optimizer.decay_towards == "init" and spec.optimizer.weight_decay:
        initial = [p.detach().clone() for p in decaying]
    train, train_y = tensors(data.train_features), torch.as_tensor(data.train_labels, device=device)
    rows = train_set_positions(spec, data.train_labels)
    train_set, train_set_y = None, None
    if rows is not None and len(rows) == len(train_y):
        train_set, train_set_y = train, train_y  # the whole subset: no copy
    elif rows is not None:
        index = torch.as_tensor(rows, device=device)
        train_set, train_set_y = {k: v[index] for k, v in train.items()}, train_y[index]
    noise = None
    if spec.noise.active:
        noise = torch.Generator(device=device)
        noise.manual_seed(int(np.random.SeedSequence([spec.seed, 1]).generate_state(1)[0]))
    return RunSetup(
        spec,
        model,
        optimizer,
        train,
        train_y,
        tensors(data.test_features),
        torch.as_tensor(data.test_labels, device=device),
        train_set,
        train_set_y,
        min(data.n_classes, model.n_outputs),
        initial,
        noise,
        decaying,
        (task_classes(spec, data), data.chance_accuracy),
        data_sha256(data),
    )


def make_optimizer(
    spec: OptimizerSpec,
    named_params: Iterable[tuple[str, torch.Tensor]],
    model: Classifier,
) -> torch.optim.Optimizer:
    """The spec's torch optimiser over ``named_params`` (parameters of ``model``, or tensors
    named as its parameters, e.g. stacked along a run axis). With ``decay_scope: all`` one
    parameter group (as before the field existed, so checkpoints keep their layout); with
    ``weights`` a group of the parameters in scope at ``weight_decay`` and one of the others
    (norm layers, biases) at 0."""
    # Decay towards the initialisation is applied by hand (decay_towards_init_), so the
    # optimiser's own decay, which pulls towards zero, is off then.
    decay = spec.weight_decay if spec.decay_towards == "zero" else 0.0
    named = list(named_params)
    if spec.decay_scope == "all":
        groups: list[dict] = [{"params": [p for _, p in named]}]
    else:
        decayed = [p for n, p in named if in_scope(n, model, spec.decay_scope)]
        exempt = [p for n, p in named if not in_scope(n, model, spec.decay_scope)]
        groups = [{"params": decayed}, {"params": exempt, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]  # a model with no biases or norms
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, weight_decay=decay)
    if spec.name == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, betas=spec.betas, weight_decay=decay)
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=decay)


@torch.no_grad()
def decay_towards_init_(setup: RunSetup) -> None:
    """Weight decay towards w0, in the optimiser's own form: decoupled for AdamW (w -= lr * wd *
    (w - w0) before the update, as AdamW does with w0 = 0), an L2 term in the gradient for Adam
    and SGD (grad += wd * (w - w0)); only the parameters in ``optimizer.decay_scope``."""
    opt = setup.spec.optimizer
    params = setup.decaying
    assert setup.initial is not None
    offsets = torch._foreach_sub(params, setup.initial)
    if opt.name == "adamw":
        torch._foreach_add_(params, offsets, alpha=-opt.lr * opt.weight_decay)
    else:
        grads = [p.grad for p in params]
        torch._foreach_add_(grads, offsets, alpha=opt.weight_decay)


class Batches:
    """The samples of each step: the whole training set, or minibatches of a permutation drawn
    afresh every epoch from (seed, epoch), so any step's batch is known without replaying the
    ones before it (resuming is exact)."""

    def __init__(self, setup: RunSetup):
        self.setup = setup
        self.n = len(setup.train_y)
        self.size = setup.spec.batch_size or self.n
        self.per_epoch = -(-self.n // self.size)
        self._epoch, self._order = -1, None

    def __call__(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        setup = self.setup
        if self.size >= self.n:
            return setup.train, setup.train_y
        epoch, position = divmod(step - 1, self.per_epoch)
        if epoch != self._epoch:
            order = np.random.default_rng([setup.spec.seed, 2, epoch]).permutation(self.n)
            self._epoch = epoch
            self._order = torch.as_tensor(order, device=setup.train_y.device)
        rows = self._order[position * self.size : (position + 1) * self.size]
        return {k: v[rows] for k, v in setup.train.items()}, setup.train_y[rows]


@torch.no_grad()
def evaluate(
    setup: RunSetup,
    batch_size: int,
    model: Classifier | None = None,
    split: Literal["test", "train_set"] = "test",
) -> SplitMetrics:
    """Loss, accuracy, logit scale and softmax-collapse fraction (:class:`SplitMetrics`), in
    eval mode, in slices of ``batch_size`` samples, of ``model`` (default: the run's own; a
    shadow copy when measuring in the background) on the whole test set, or (``train_set``) on
    the rows of the training subset ``train_set_accuracy`` is measured on."""
    model = setup.model if model is None else model
    features, labels = (
        (setup.test, setup.test_y) if split == "test" else (setup.train_set, setup.train_set_y)
    )
    assert features is not None and labels is not None, f"this run does not measure {split}"
    was_training = model.training
    model.eval()
    metrics = test_metrics(model, features, labels, setup.spec.loss, setup.n_classes, batch_size)
    model.train(was_training)
    return metrics


def _gaussian(like: list[torch.Tensor], std: float, generator: torch.Generator | None):
    return [
        torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype) * std
        for t in like
    ]


def _perturb_(params: list[torch.Tensor], std: float, generator: torch.Generator | None):
    """Add Gaussian noise of ``std`` to every parameter in place; return the noise added."""
    with torch.no_grad():
        noise = _gaussian(params, std, generator)
        torch._foreach_add_(params, noise)
    return noise


class RunInterrupted(Exception):
    """Training stopped on request (``stop()`` returned True) after flushing ``steps_done``."""

    def __init__(self, steps_done: int):
        super().__init__(f"stopped on request after step {steps_done} (flushed)")
        self.steps_done = steps_done


def train_run(
    store: RunStore,
    run_index: int,
    settings: StoreSettings,
    on_steps: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
    still_mine: StillMine = always_mine,
    on_step: Callable[[int, torch.Tensor, int], None] | None = None,
) -> str:
    """Train run ``run_index`` of ``store`` to completion; return its final status.

    ``on_steps(k)`` is called after each flush with the number of steps just flushed (progress).
    ``on_step(step, buffer, rows)`` is called after every update: the first ``rows`` rows of
    ``buffer`` (flush_every, 1, SCALARS), on the device, are the measurements since the last
    flush (live progress: :class:`runner.progress.StepReporter`).
    ``stop()`` is asked after every step; when it returns True the steps taken so far are
    flushed (with their checkpoint) and :class:`RunInterrupted` is raised (Ctrl-C).
    A run with ``stop_when`` ends ``done`` at the first flush where its outcome is decided
    (:mod:`runner.deciding`).
    The caller must hold the run's lease; ``still_mine(run_index)`` is asked before every write
    of the run, and when it says the lease was taken over training stops at once, writing
    nothing, and the status is :data:`~runner.recording.HELD`.
    """
    spec = store.spec(run_index)
    status, steps_done = store.state(run_index)
    if status in ("done", "diverged"):  # final; a failed run is retried from its checkpoint
        return status
    device = torch.device(settings.device)
    setup = build_run(spec, device, store)
    if hasattr(setup.model, "vocab_tables"):  # the answer-position GPT
        setup.model.vocab_tables = settings.vocab_tables
    checkpoint = store.read_checkpoint(run_index)
    first_step = 1
    if checkpoint is not None:
        # The checkpoint is written after its metrics and before steps_done, so it is the truth.
        first_step = load_checkpoint(checkpoint, setup.model, setup.optimizer, setup.noise) + 1

    model, optimizer = setup.model, setup.optimizer
    measurer = StepMeasurer(model, settings.measure_in_background)
    record = StepRecord(
        store,
        [run_index],
        settings.flush_every,
        first_step,
        spec.eval_every,
        lambda: evaluate(setup, settings.eval_batch_size, measurer.target),
        NormMeter(measurer.target),
        HistogramMeter(measurer.target, store.hist_groups, store.bin_edges),
        device,
        train_set=None
        if setup.train_set is None
        else lambda: evaluate(setup, settings.eval_batch_size, measurer.target, "train_set"),
        still_mine=still_mine,
        watches=[watch_for(spec)],
        classes=[setup.classes],
        environments=[{**training_environment(device, "sequential"), "data": setup.data_sha256}],
    )
    record.start()
    if record.statuses[run_index] in (HELD, "done"):  # taken over, or decided before a crash
        return record.statuses[run_index]
    scalars, block = record.scalars, settings.flush_every

    def save(slot: int, steps_done: int) -> bytes:
        return checkpoint_bytes(steps_done, model.state_dict(), optimizer.state_dict(), setup.noise)

    def flush(last_step: int) -> str:
        measurer.drain()
        on_steps(record.flush(last_step, save))
        return record.statuses[run_index]

    batches = Batches(setup)
    params = list(model.parameters())
    noise = spec.noise
    model.train()
    measurer.start(record.measure)
    try:
        for step in range(first_step, spec.steps + 1):
            row = step - record.first_step
            measurer.submit(step, row)  # measurements of step k see the weights before update k
            features, labels = batches(step)
            perturbation = _perturb_(params, noise.weight, setup.noise) if noise.weight else None
            logits = model(features)
            loss = classification_loss(spec.loss, logits, labels)
            with torch.no_grad():
                scalars[row, :, 0] = loss.detach()
                scalars[row, :, 1] = correct(logits, labels, setup.n_classes).float().mean()
                if record.batch_collapse(step):  # full batch: this forward is the whole subset
                    scalars[row, :, COLLAPSE] = collapse_fraction(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                if perturbation is not None:
                    torch._foreach_sub_(params, perturbation)
                if noise.gradient:
                    std = noise.gradient / (1 + step) ** (noise.gradient_anneal / 2)
                    grads = [p.grad for p in params if p.grad is not None]
                    torch._foreach_add_(grads, _gaussian(grads, std, setup.noise))
                if setup.initial is not None:
                    decay_towards_init_(setup)
            optimizer.step()
            if noise.update:
                with torch.no_grad():
                    _perturb_(params, noise.update, setup.noise)
            if on_step is not None:
                on_step(step, scalars, row + 1)
            stopping = stop()
            if row + 1 == block or step == spec.steps or stopping:
                status = flush(step)
                if status in ("diverged", HELD, "done"):  # done: stopped early, decided
                    return status
                if stopping and step < spec.steps:
                    raise RunInterrupted(step)
        return record.finish(spec.steps)[run_index]
    finally:
        measurer.close()
