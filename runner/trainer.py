"""Train one run into its slot of a run store, resuming after the last flushed step.

Reads top to bottom: build data, model and optimiser from the spec; restore the last checkpoint
if there is one; then per step measure (train metrics from the same forward pass that is
back-propagated, test metrics, norms, histograms) and update. Measurements accumulate on the
device and reach the host only at a flush, every ``flush_every`` steps: metrics block, then
checkpoint, then ``steps_done``, in that order, so a crash at any point leaves a prefix of steps
that a resumed run continues without gap or duplicate.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from runner.data import load_task_data
from runner.init_from import load_initial_weights
from runner.measuring import StepMeasurer
from runner.models.base import Classifier, build_model
from runner.spec import (
    PARAM_GROUPS,
    ModularAdditionTask,
    OptimizerSpec,
    RunSpec,
    StoreSettings,
)
from runner.store import RunStore

#: Per-step scalar metrics, in buffer column order.
SCALARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "param_norm_total")


def is_scaled(name: str, param: torch.nn.Parameter, model: Classifier, scope: str) -> bool:
    """Whether ``alpha`` multiplies this parameter: all of them, or (scope ``weights``) all but
    biases and the gains and shifts of norm layers."""
    if scope == "all":
        return True
    return not (name.endswith("bias") or model.parameter_group(name) == "norm")


def rescale_(model: Classifier, alpha: float, scope: str = "all") -> None:
    """The grokking configuration: multiply the (distinct) parameters in ``scope`` by ``alpha``."""
    if alpha != 1.0:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if is_scaled(name, param, model, scope):
                    param.mul_(alpha)


def is_measured(step: int, every_steps: int) -> bool:
    """Cadence rule shared by test evaluation: step 1 (the initialisation) and every k-th step."""
    return step == 1 or step % every_steps == 0


@dataclass
class RunSetup:
    spec: RunSpec
    model: Classifier
    optimizer: torch.optim.Optimizer
    train: dict[str, torch.Tensor]
    train_y: torch.Tensor
    test: dict[str, torch.Tensor]
    test_y: torch.Tensor
    n_classes: int  # logits considered for accuracy (columns 0..n_classes-1)
    initial: list[torch.Tensor] | None  # w0, kept when decay pulls towards the initialisation
    noise: torch.Generator | None  # the noise interventions' own generator


def build_run(spec: RunSpec, device: torch.device, store: RunStore | None = None) -> RunSetup:
    """Data, model (initialised, rescaled or loaded from ``init_from``) and optimiser."""
    data = load_task_data(spec)
    torch.manual_seed(spec.seed)
    answer_token_head = isinstance(spec.task, ModularAdditionTask) and spec.model.family == "gpt"
    model = build_model(spec.model, data, answer_token_head=answer_token_head).to(device)
    optimizer = make_optimizer(spec.optimizer, model.parameters())
    if spec.init_from is None:
        rescale_(model, spec.alpha, spec.alpha_scope)
    else:
        load_initial_weights(model, optimizer, spec, store, device)

    def tensors(features: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=device) for k, v in features.items()}

    initial = None
    if spec.optimizer.decay_towards == "init" and spec.optimizer.weight_decay:
        initial = [p.detach().clone() for p in model.parameters()]
    noise = None
    if spec.noise.active:
        noise = torch.Generator(device=device)
        noise.manual_seed(int(np.random.SeedSequence([spec.seed, 1]).generate_state(1)[0]))
    return RunSetup(
        spec,
        model,
        optimizer,
        tensors(data.train_features),
        torch.as_tensor(data.train_labels, device=device),
        tensors(data.test_features),
        torch.as_tensor(data.test_labels, device=device),
        min(data.n_classes, model.n_outputs),
        initial,
        noise,
    )


def make_optimizer(spec: OptimizerSpec, params) -> torch.optim.Optimizer:
    # Decay towards the initialisation is applied by hand (decay_towards_init_), so the
    # optimiser's own decay, which pulls towards zero, is off then.
    decay = spec.weight_decay if spec.decay_towards == "zero" else 0.0
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, weight_decay=decay)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, weight_decay=decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=decay)


@torch.no_grad()
def decay_towards_init_(setup: RunSetup) -> None:
    """Weight decay towards w0, in the optimiser's own form: decoupled for AdamW (w -= lr * wd *
    (w - w0) before the update, as AdamW does with w0 = 0), an L2 term in the gradient for Adam
    and SGD (grad += wd * (w - w0))."""
    opt = setup.spec.optimizer
    params = [p for p in setup.model.parameters()]
    assert setup.initial is not None
    offsets = torch._foreach_sub(params, setup.initial)
    if opt.name == "adamw":
        torch._foreach_add_(params, offsets, alpha=-opt.lr * opt.weight_decay)
    else:
        grads = [p.grad for p in params]
        torch._foreach_add_(grads, offsets, alpha=opt.weight_decay)


def classification_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, reduction="mean"):
    """Cross-entropy, or the squared error between softmax and one-hot summed over classes
    (seed 002's MSE loss), averaged (or summed) over samples."""
    if kind == "cross_entropy":
        return F.cross_entropy(logits, labels, reduction=reduction)
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    per_sample = ((logits.softmax(dim=1) - target) ** 2).sum(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


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
    setup: RunSetup, batch_size: int, model: Classifier | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy on the whole test set, in slices of ``batch_size`` samples, of
    ``model`` (default: the run's own; a shadow copy when measuring in the background)."""
    model = setup.model if model is None else model
    was_training = model.training
    model.eval()
    n = len(setup.test_y)
    loss_sum = torch.zeros((), device=setup.test_y.device)
    correct = torch.zeros((), device=setup.test_y.device)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        logits = model({k: v[rows] for k, v in setup.test.items()})
        labels = setup.test_y[rows]
        loss_sum += classification_loss(setup.spec.loss, logits, labels, reduction="sum")
        correct += (logits[:, : setup.n_classes].argmax(dim=1) == labels).sum()
    model.train(was_training)
    return loss_sum / n, correct / n


def group_layout(
    model: Classifier, names: list[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into ``PARAM_GROUPS`` of each named parameter, and the mask of groups that have no
    parameter of their own (a tied head, the recurrent group of a transformer): those norms are
    NaN, never 0."""
    groups = [PARAM_GROUPS.index(model.parameter_group(n)) for n in names]
    present = torch.zeros(len(PARAM_GROUPS), dtype=torch.bool)
    present[sorted(set(groups))] = True
    return torch.tensor(groups, device=device), (~present).to(device)


class NormMeter:
    """Per-group and total L2 norms without a host sync: one fused norm call per step."""

    def __init__(self, model: Classifier):
        named = list(model.named_parameters())  # tied parameters appear once
        self.params = [p for _, p in named]
        self.group_index, self.absent = group_layout(
            model, [n for n, _ in named], self.params[0].device
        )

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        squares = torch.stack(torch._foreach_norm(self.params)).float() ** 2
        per_group = torch.zeros(len(PARAM_GROUPS), device=squares.device).index_add_(
            0, self.group_index, squares
        )
        group_norms = per_group.sqrt().masked_fill(self.absent, float("nan"))
        return group_norms, squares.sum().sqrt()


class HistogramMeter:
    """Weight histograms of chosen groups with fixed edges (values outside counted apart)."""

    def __init__(self, model: Classifier, groups: list[str], edges: np.ndarray):
        named = list(model.named_parameters())
        self.groups = [[p for n, p in named if model.parameter_group(n) == g] for g in groups]
        self.low, self.high, self.bins = float(edges[0]), float(edges[-1]), len(edges) - 1

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        counts, outside = [], []
        for params in self.groups:
            if not params:
                nan = torch.full((self.bins,), float("nan"))
                counts.append(nan)
                outside.append(torch.tensor(float("nan")))
                continue
            flat = torch.cat([p.detach().flatten().float() for p in params])
            hist = torch.histc(flat, bins=self.bins, min=self.low, max=self.high)
            counts.append(hist.cpu())
            outside.append(torch.tensor(float(flat.numel())) - hist.sum().cpu())
        return torch.stack(counts), torch.stack(outside)


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


def _save_checkpoint(store: RunStore, run_index: int, setup: RunSetup, steps_done: int) -> None:
    buffer = io.BytesIO()  # through the store: local file or object store alike
    torch.save(
        {
            "steps_done": steps_done,
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "noise_rng": setup.noise.get_state() if setup.noise is not None else None,
        },
        buffer,
    )
    store.write_checkpoint(run_index, buffer.getvalue())  # atomic: the old one or the new one


def _load_checkpoint(data: bytes, setup: RunSetup) -> int:
    state = torch.load(io.BytesIO(data), map_location=next(setup.model.parameters()).device)
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if setup.noise is not None:
        setup.noise.set_state(state["noise_rng"].cpu())
    return int(state["steps_done"])


def train_run(
    store: RunStore,
    run_index: int,
    settings: StoreSettings,
    on_steps: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
) -> str:
    """Train run ``run_index`` of ``store`` to completion; return its final status.

    ``on_steps(k)`` is called after each flush with the number of steps just flushed (progress).
    ``stop()`` is asked after every step; when it returns True the steps taken so far are
    flushed (with their checkpoint) and :class:`RunInterrupted` is raised (Ctrl-C).
    The caller must hold the run's lock.
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
        first_step = _load_checkpoint(checkpoint, setup) + 1
    store.set_state(run_index, "running", first_step - 1)

    hist_steps = store.hist_steps
    measurer = StepMeasurer(setup.model, settings.measure_in_background)
    norms = NormMeter(measurer.target)
    histograms = HistogramMeter(measurer.target, store.hist_groups, store.bin_edges)
    block = settings.flush_every
    scalars = torch.full((block, len(SCALARS)), float("nan"), device=device)
    group_norms = torch.full((block, len(PARAM_GROUPS)), float("nan"), device=device)
    # (step, position along hist_step, counts, outside) of the histograms taken since the last flush
    snapshots: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
    model, optimizer = setup.model, setup.optimizer
    block_start = first_step

    def flush(last_step: int) -> str:
        nonlocal block_start
        measurer.drain()
        rows = last_step - block_start + 1
        host = scalars[:rows].cpu().numpy()
        status = "running"
        bad = np.flatnonzero(~np.isfinite(host[:, 0]))
        if len(bad):  # keep the steps up to and including the first non-finite loss
            rows, last_step, status = int(bad[0]) + 1, block_start + int(bad[0]), "diverged"
            host = host[:rows]
        values = {name: host[:, i] for i, name in enumerate(SCALARS)}
        values["param_norm"] = group_norms[:rows].cpu().numpy()
        store.write_steps(run_index, block_start, values)
        kept = [s for s in snapshots if s[0] <= last_step]  # none after a divergence
        if kept:
            store.write_histograms(
                run_index,
                np.array([s[1] for s in kept]),
                torch.stack([s[2] for s in kept]).numpy(),
                torch.stack([s[3] for s in kept]).numpy(),
            )
        snapshots.clear()
        if status == "running":
            _save_checkpoint(store, run_index, setup, last_step)
        store.set_state(run_index, status, last_step)
        on_steps(rows)
        scalars.fill_(float("nan"))
        block_start = last_step + 1
        return status

    hist_positions = {int(s): i for i, s in enumerate(hist_steps)}

    @torch.no_grad()
    def measure(step: int, row: int) -> None:
        if is_measured(step, spec.eval_every):
            scalars[row, 2], scalars[row, 3] = evaluate(
                setup, settings.eval_batch_size, measurer.target
            )
        group_norms[row], scalars[row, 4] = norms()
        if step in hist_positions:
            snapshots.append((step, hist_positions[step], *histograms()))

    batches = Batches(setup)
    params = list(model.parameters())
    noise = spec.noise
    model.train()
    measurer.start(measure)
    try:
        for step in range(first_step, spec.steps + 1):
            row = step - block_start
            measurer.submit(step, row)  # measurements of step k see the weights before update k
            features, labels = batches(step)
            perturbation = _perturb_(params, noise.weight, setup.noise) if noise.weight else None
            logits = model(features)
            loss = classification_loss(spec.loss, logits, labels)
            with torch.no_grad():
                scalars[row, 0] = loss.detach()
                predicted = logits[:, : setup.n_classes].argmax(dim=1)
                scalars[row, 1] = (predicted == labels).float().mean()
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
            stopping = stop()
            if row + 1 == block or step == spec.steps or stopping:
                status = flush(step)
                if status == "diverged":
                    return status
                if stopping and step < spec.steps:
                    raise RunInterrupted(step)
        # The last checkpoint stays: it holds the final weights (for continuing or ungrokking).
        store.set_state(run_index, "done", spec.steps)
        return "done"
    finally:
        measurer.close()
