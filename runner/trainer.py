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

from runner.models.gpt import AnswerGPT, parameter_group
from runner.spec import PARAM_GROUPS, RunSpec, StoreSettings
from runner.store import RunStore
from runner.tasks.modular import load_modular

#: Per-step scalar metrics, in buffer column order.
SCALARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "param_norm_total")


def rescale_(model: torch.nn.Module, alpha: float) -> None:
    """The grokking configuration: multiply every (distinct) parameter by ``alpha`` in place."""
    if alpha != 1.0:
        with torch.no_grad():
            for param in model.parameters():
                param.mul_(alpha)


def is_measured(step: int, every_steps: int) -> bool:
    """Cadence rule shared by test evaluation: step 1 (the initialisation) and every k-th step."""
    return step == 1 or step % every_steps == 0


@dataclass
class RunSetup:
    model: AnswerGPT
    optimizer: torch.optim.Optimizer
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int  # logits considered for accuracy (p residues or the whole vocabulary)


def build_run(spec: RunSpec, device: torch.device) -> RunSetup:
    data = load_modular(spec.task, spec.n_samples, spec.seed)
    torch.manual_seed(spec.seed)
    model = AnswerGPT(spec.model, spec.task.vocab_size).to(device)
    rescale_(model, spec.alpha)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=spec.optimizer.lr,
        betas=spec.optimizer.betas,
        weight_decay=spec.optimizer.weight_decay,
    )

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=device)

    n_classes = spec.task.p if spec.task.accuracy_over == "residues" else spec.task.vocab_size
    return RunSetup(
        model,
        optimizer,
        tensor(data.train_inputs),
        tensor(data.train_targets),
        tensor(data.test_inputs),
        tensor(data.test_targets),
        n_classes,
    )


class NormMeter:
    """Per-group and total L2 norms without a host sync: one fused norm call per step."""

    def __init__(self, model: torch.nn.Module):
        named = list(model.named_parameters())  # tied parameters appear once
        self.params = [p for _, p in named]
        groups = [PARAM_GROUPS.index(parameter_group(n)) for n, _ in named]
        device = self.params[0].device
        self.group_index = torch.tensor(groups, device=device)
        present = torch.zeros(len(PARAM_GROUPS), dtype=torch.bool)
        present[sorted(set(groups))] = True
        # A group with no parameters of its own (a tied head) is NaN, never 0.
        self.absent = (~present).to(device)

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

    def __init__(self, model: torch.nn.Module, groups: list[str], edges: np.ndarray):
        named = list(model.named_parameters())
        self.groups = [[p for n, p in named if parameter_group(n) == g] for g in groups]
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
        },
        buffer,
    )
    store.write_checkpoint(run_index, buffer.getvalue())  # atomic: the old one or the new one


def _load_checkpoint(data: bytes, setup: RunSetup) -> int:
    state = torch.load(io.BytesIO(data), map_location=next(setup.model.parameters()).device)
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
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
    setup = build_run(spec, device)
    checkpoint = store.read_checkpoint(run_index)
    first_step = 1
    if checkpoint is not None:
        # The checkpoint is written after its metrics and before steps_done, so it is the truth.
        first_step = _load_checkpoint(checkpoint, setup) + 1
    store.set_state(run_index, "running", first_step - 1)

    hist_steps = store.hist_steps
    norms = NormMeter(setup.model)
    histograms = HistogramMeter(setup.model, store.hist_groups, store.bin_edges)
    block = settings.flush_every
    scalars = torch.full((block, len(SCALARS)), float("nan"), device=device)
    group_norms = torch.full((block, len(PARAM_GROUPS)), float("nan"), device=device)
    # (step, position along hist_step, counts, outside) of the histograms taken since the last flush
    snapshots: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
    model, optimizer = setup.model, setup.optimizer
    block_start = first_step

    def flush(last_step: int) -> str:
        nonlocal block_start
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
    for step in range(first_step, spec.steps + 1):
        row = step - block_start
        logits = model(setup.train_x)
        loss = F.cross_entropy(logits, setup.train_y)
        with torch.no_grad():
            scalars[row, 0] = loss.detach()
            predicted = logits[:, : setup.n_classes].argmax(dim=1)
            scalars[row, 1] = (predicted == setup.train_y).float().mean()
            if is_measured(step, spec.eval_every):
                test_logits = model(setup.test_x)
                scalars[row, 2] = F.cross_entropy(test_logits, setup.test_y)
                test_predicted = test_logits[:, : setup.n_classes].argmax(dim=1)
                scalars[row, 3] = (test_predicted == setup.test_y).float().mean()
            group_norms[row], scalars[row, 4] = norms()
            if step in hist_positions:
                snapshots.append((step, hist_positions[step], *histograms()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stopping = stop()
        if row + 1 == block or step == spec.steps or stopping:
            status = flush(step)
            if status == "diverged":
                return status
            if stopping and step < spec.steps:
                raise RunInterrupted(step)
    # The last checkpoint stays: it holds the run's final weights (for continuing or ungrokking).
    store.set_state(run_index, "done", spec.steps)
    return "done"
