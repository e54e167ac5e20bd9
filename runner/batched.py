"""Train several runs of one architecture together: stacked parameters, one vmapped step.

Runs that differ only in seed and data size (the usual grid) share every shape, so their
parameters can be stacked along a leading run axis and one ``torch.vmap``-ed forward and backward
serves them all: fewer, larger kernels instead of many small ones, one Python step loop instead of
K. Each run keeps its own numbers:

- data: each run's training subset is padded to the largest n of the group and the per-sample
  losses are weighted 1/n on the run's own rows and 0 on padding, so every run's loss is the mean
  over its own samples and the padding contributes exactly nothing to any gradient;
- loss: the sum of the runs' losses; run k's parameters appear in run k's loss only, so each
  slice of the stacked gradient is that run's own gradient;
- optimiser: the grid's torch optimiser over the stacked tensors. AdamW, Adam and SGD update
  element by element (moments, bias correction from one shared step count, decoupled or L2
  decay), so a slice of the stacked update is the run's own update;
- metrics, norms, histograms: per run, on its slice; written into each run's slot of the store
  by the same flush order as :func:`runner.trainer.train_run` (metrics, checkpoint, steps_done),
  with checkpoints in the sequential format, so a run may be resumed by either path.

``tests/runner/test_batched.py`` checks that batched training equals sequential training within
float tolerance. What a batched group cannot do is refused by :func:`batch_problem` (the
executor then trains that run alone).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from runner.models.gpt import tabled_answer_logits
from runner.spec import PARAM_GROUPS, ModularAdditionTask, RunSpec, StoreSettings
from runner.store import RunStore
from runner.trainer import (
    SCALARS,
    RunInterrupted,
    RunSetup,
    _load_checkpoint,
    build_run,
    group_layout,
    is_measured,
)


def batch_problem(spec: RunSpec) -> str | None:
    """Why ``spec`` cannot train in a batched group (None when it can)."""
    if not isinstance(spec.task, ModularAdditionTask) or spec.model.family != "gpt":
        return "only modular addition with the GPT decoder is batched"
    if spec.batch_size is not None:
        return "minibatches are not batched (full batch only)"
    if spec.noise.active:
        return "noise interventions are not batched"
    if spec.init_from is not None:
        return "init_from is not batched"
    if spec.optimizer.decay_towards != "zero":
        return "decay towards the initialisation is not batched"
    if spec.model.dropout:
        return "dropout is not batched"
    return None


def group_key(spec: RunSpec) -> str:
    """Runs with equal keys can share a group: everything but seed, data size and label."""
    dump = spec.model_dump(mode="json", exclude={"seed", "n_samples", "data_fraction", "label"})
    return json.dumps(dump, sort_keys=True)


class StackedRuns:
    """The parameters of K runs of one architecture stacked along a leading run axis, and the
    vmapped forward of the template model (the first run's module, whose own tensors are not
    used)."""

    def __init__(self, setups: Sequence[RunSetup], distinct_rows: bool = True):
        self.template = setups[0].model
        self.names = [n for n, _ in self.template.named_parameters()]  # tied ones appear once
        per_run = [dict(s.model.named_parameters()) for s in setups]
        self.params = {
            n: torch.stack([run[n].detach() for run in per_run]).requires_grad_(True)
            for n in self.names
        }
        self.k = len(setups)

        def one(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.template, params, (inputs,))

        self.forward_each = torch.vmap(one, in_dims=(0, 0))  # per-run inputs
        self.forward_shared = torch.vmap(one, in_dims=(0, None))  # one input for every run
        self.tables = None
        if distinct_rows and len(self.template.lm.transformer.h) == 1:  # see DistinctRows
            self.tables = DistinctRows(self.template)

            def table_one(params, inverse, tokens):
                named = {f"model.{n}": p for n, p in params.items()}  # the wrapped model's names
                return functional_call(self.tables, named, (inverse, tokens))

            self.table_each = torch.vmap(table_one, in_dims=(0, 0, None))
            self.table_shared = torch.vmap(table_one, in_dims=(0, None, None))

    def logits_each(self, inputs: torch.Tensor, table=None) -> torch.Tensor:
        """Logits (K, N, vocab) of per-run inputs (K, N, T); ``table`` from :func:`distinct`."""
        if table is None or self.tables is None:
            return self.forward_each(self.params, inputs)
        return self.table_each(self.params, table[1], table[0])

    def logits_ragged(self, table) -> list[torch.Tensor]:
        """Logits (n_k, vocab) of each run's own rows, unpadded (:class:`DistinctRows` only):
        the per-sample work is then proportional to the runs' total n, not K times the
        largest n. One call per run on its slice of the stacked parameters."""
        tokens, inverses = table
        out = []
        for k, inverse in enumerate(inverses):
            named = {f"model.{n}": p[k] for n, p in self.params.items()}
            out.append(functional_call(self.tables, named, (inverse, tokens)))
        return out

    def logits_shared(self, inputs: torch.Tensor, table=None) -> torch.Tensor:
        """Logits (K, N, vocab) of inputs (N, T) shared by every run."""
        if table is None or self.tables is None:
            return self.forward_shared(self.params, inputs)
        return self.table_shared(self.params, table[1], table[0])

    def tensors(self) -> list[torch.Tensor]:
        return [self.params[n] for n in self.names]

    def load_into(self, k: int, setup: RunSetup) -> None:
        """Copy run ``k``'s slice into its own (sequential) model."""
        with torch.no_grad():
            own = dict(setup.model.named_parameters())
            for n in self.names:
                own[n].copy_(self.params[n][k])


def distinct(inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per position, the distinct tokens of ``inputs`` (..., T) and each row's index into them
    (..., T): the lookup tables of :class:`DistinctRows`."""
    flat = inputs.reshape(-1, inputs.shape[-1])
    tokens, inverse = [], []
    for t in range(flat.shape[1]):
        values, where = torch.unique(flat[:, t], return_inverse=True)
        tokens.append(values)
        inverse.append(where)
    return tokens, torch.stack(inverse, dim=-1).view(inputs.shape)


class DistinctRows(torch.nn.Module):
    """The answer-position logits of a 1-layer :class:`~runner.models.gpt.AnswerGPT`, with the
    work that depends only on (token, position) done once per distinct pair.

    In one layer, the keys and values of position t (and the query and residual at the answer
    position) are functions of the embedding of (token_t, t) alone. Modular addition has 4
    constant positions and p values at the other two, so the QKV projection runs on 2p + 4 rows
    instead of 6 per sample, and each sample gathers its rows. The attention at the answer
    position, the MLP, the norms and the head still run per sample. Mathematically the same
    function as :meth:`AnswerGPT.forward`; in floating point it differs only by the summation
    order inside the matrix products (``tests/runner/test_batched.py``).
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inverse: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        return tabled_answer_logits(self.model, inverse, tokens)


class PaddedData:
    """The runs' training subsets padded to the largest n: inputs (K, N, T), labels (K, N), and
    per-row weights 1/n_k on real rows, 0 on padding (rows repeat the run's first sample, so
    they are finite)."""

    def __init__(self, setups: Sequence[RunSetup]):
        sizes = [len(s.train_y) for s in setups]
        longest = max(sizes)
        device = setups[0].train_y.device
        inputs, labels, weights = [], [], []
        for s, n in zip(setups, sizes, strict=True):
            rows = torch.cat([torch.arange(n), torch.zeros(longest - n, dtype=torch.long)])
            rows = rows.to(device)
            inputs.append(s.train["input_ids"][rows])
            labels.append(s.train_y[rows])
            weight = torch.zeros(longest, device=device)
            weight[:n] = 1.0 / n
            weights.append(weight)
        self.inputs = torch.stack(inputs)
        self.labels = torch.stack(labels)
        self.weights = torch.stack(weights)
        self.real = (self.weights > 0).float()
        self.table = distinct(self.inputs)
        # The same tables, each run's rows unpadded (for StackedRuns.logits_ragged).
        self.ragged = (self.table[0], [self.table[1][k, :n] for k, n in enumerate(sizes)])
        self.ragged_labels = [s.train_y for s in setups]
        self.sizes = torch.tensor(sizes, device=device, dtype=torch.float32)


def per_sample_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample loss over the last axis of ``logits`` (any leading shape), as
    :func:`runner.trainer.classification_loss` defines it before its reduction."""
    flat = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    if kind == "cross_entropy":
        out = F.cross_entropy(flat, flat_labels, reduction="none")
    else:
        target = F.one_hot(flat_labels, flat.shape[1]).to(flat.dtype)
        out = ((flat.softmax(dim=1) - target) ** 2).sum(dim=1)
    return out.view(labels.shape)


@torch.no_grad()
def evaluate_stacked(
    stacked: StackedRuns, setup: RunSetup, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Test loss and accuracy of every run (K,), on the test split the runs share."""
    n = len(setup.test_y)
    inputs = setup.test["input_ids"]
    loss_sum = torch.zeros(stacked.k, device=inputs.device)
    correct = torch.zeros(stacked.k, device=inputs.device)
    for start in range(0, n, batch_size):
        rows = inputs[start : start + batch_size]
        logits = stacked.logits_shared(rows, distinct(rows) if stacked.tables else None)
        labels = setup.test_y[start : start + batch_size].expand(stacked.k, -1)
        loss_sum += per_sample_loss(setup.spec.loss, logits, labels).sum(dim=1)
        correct += (logits[..., : setup.n_classes].argmax(dim=-1) == labels).sum(dim=1)
    return loss_sum / n, correct / n


class StackedNorms:
    """Per-group and total L2 norms of every run (K, groups) and (K,), without a host sync."""

    def __init__(self, stacked: StackedRuns):
        device = stacked.params[stacked.names[0]].device
        self.stacked = stacked
        self.group_index, self.absent = group_layout(stacked.template, stacked.names, device)

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        squares = torch.stack(
            [p.flatten(1).float().pow(2).sum(dim=1) for p in self.stacked.tensors()]
        )  # (params, K)
        per_group = torch.zeros(len(PARAM_GROUPS), self.stacked.k, device=squares.device)
        per_group.index_add_(0, self.group_index, squares)
        group_norms = per_group.sqrt().T.masked_fill(self.absent, float("nan"))
        return group_norms, squares.sum(dim=0).sqrt()


class StackedHistograms:
    """Weight histograms of every run, as :class:`runner.trainer.HistogramMeter` takes them."""

    def __init__(self, stacked: StackedRuns, groups: list[str], edges: np.ndarray):
        model = stacked.template
        self.stacked = stacked
        self.groups = [[n for n in stacked.names if model.parameter_group(n) == g] for g in groups]
        self.low, self.high, self.bins = float(edges[0]), float(edges[-1]), len(edges) - 1

    @torch.no_grad()
    def __call__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts, outside = [], []
        for names in self.groups:
            if not names:
                counts.append(torch.full((self.bins,), float("nan")))
                outside.append(torch.tensor(float("nan")))
                continue
            flat = torch.cat([self.stacked.params[n][k].detach().flatten().float() for n in names])
            hist = torch.histc(flat, bins=self.bins, min=self.low, max=self.high)
            counts.append(hist.cpu())
            outside.append(torch.tensor(float(flat.numel())) - hist.sum().cpu())
        return torch.stack(counts), torch.stack(outside)


def stack_optimizer_state(optimizer: torch.optim.Optimizer, setups: Sequence[RunSetup]) -> None:
    """Give the stacked optimiser the runs' own (checkpointed) states, stacked."""
    states = [s.optimizer.state_dict()["state"] for s in setups]
    if not states[0]:
        return
    merged = {}
    for index, first in states[0].items():
        entry = {}
        for key, value in first.items():
            if key == "step" or not torch.is_tensor(value) or value.dim() == 0:
                entry[key] = value  # shared by every run: they start together
            else:
                entry[key] = torch.stack([s[index][key] for s in states])
        merged[index] = entry
    state = optimizer.state_dict()
    state["state"] = merged
    optimizer.load_state_dict(state)


def unstacked_optimizer_state(optimizer: torch.optim.Optimizer, k: int, setup: RunSetup) -> dict:
    """Run ``k``'s slice of the stacked optimiser, as its own optimiser's state dict."""
    stacked = optimizer.state_dict()["state"]
    state = {
        index: {
            key: value[k].clone() if torch.is_tensor(value) and value.dim() > 0 else value
            for key, value in entry.items()
        }
        for index, entry in stacked.items()
    }
    own = setup.optimizer.state_dict()
    return {"state": state, "param_groups": own["param_groups"]}


def _save(store: RunStore, run_index: int, setup: RunSetup, optimizer_state: dict, step: int):
    buffer = io.BytesIO()  # the sequential format (runner.trainer._save_checkpoint)
    torch.save(
        {
            "steps_done": step,
            "model": setup.model.state_dict(),
            "optimizer": optimizer_state,
            "torch_rng": torch.get_rng_state(),
            "noise_rng": None,
        },
        buffer,
    )
    store.write_checkpoint(run_index, buffer.getvalue())


def train_group(
    store: RunStore,
    indices: Sequence[int],
    settings: StoreSettings,
    on_steps: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
    distinct_rows: bool = True,
) -> dict[int, str]:
    """Train runs ``indices`` of ``store`` together; return each run's final status.

    The runs must share :func:`group_key`, pass :func:`batch_problem`, be unfinished and have
    flushed the same number of steps (a group resumes together). The caller holds their locks.
    ``on_steps`` and ``stop`` are as for :func:`runner.trainer.train_run`; on a stop every run
    is flushed and :class:`~runner.trainer.RunInterrupted` is raised. ``distinct_rows``: use
    :class:`DistinctRows` for 1-layer models (off: the vmapped answer-position forward).
    """
    specs = [store.spec(i) for i in indices]
    for spec in specs:
        problem = batch_problem(spec)
        if problem:
            raise ValueError(f"run {spec.run_id} cannot be batched: {problem}")
    if len({group_key(s) for s in specs}) != 1:
        raise ValueError("a batched group must share everything but seed and data size")
    device = torch.device(settings.device)
    setups = [build_run(spec, device, store) for spec in specs]
    done = set()
    for index, setup in zip(indices, setups, strict=True):
        checkpoint = store.read_checkpoint(index)
        done.add(_load_checkpoint(checkpoint, setup) if checkpoint is not None else 0)
    if len(done) != 1:
        raise ValueError("a batched group must resume from one step; train these runs apart")
    first_step = done.pop() + 1
    spec = specs[0]
    for index in indices:
        store.set_state(index, "running", first_step - 1)

    stacked = StackedRuns(setups, distinct_rows)
    optimizer = _make_stacked_optimizer(spec, stacked)
    stack_optimizer_state(optimizer, setups)
    data = PaddedData(setups)
    norms = StackedNorms(stacked)
    histograms = StackedHistograms(stacked, store.hist_groups, store.bin_edges)
    k, block = stacked.k, settings.flush_every
    scalars = torch.full((block, k, len(SCALARS)), float("nan"), device=device)
    group_norms = torch.full((block, k, len(PARAM_GROUPS)), float("nan"), device=device)
    snapshots: list[tuple[int, int, list[tuple[torch.Tensor, torch.Tensor]]]] = []
    hist_positions = {int(s): i for i, s in enumerate(store.hist_steps)}
    active = list(range(k))  # slots still written (a diverged run stops being written)
    status_of = {i: "running" for i in indices}
    block_start = first_step

    def flush(last_step: int) -> None:
        nonlocal block_start
        rows = last_step - block_start + 1
        host = scalars[:rows].cpu().numpy()
        host_norms = group_norms[:rows].cpu().numpy()
        flushed = 0
        for slot in list(active):
            index, setup = indices[slot], setups[slot]
            run_rows, run_last, status = rows, last_step, "running"
            bad = np.flatnonzero(~np.isfinite(host[:, slot, 0]))
            if len(bad):
                run_rows, run_last, status = int(bad[0]) + 1, block_start + int(bad[0]), "diverged"
            values = {name: host[:run_rows, slot, i] for i, name in enumerate(SCALARS)}
            values["param_norm"] = host_norms[:run_rows, slot]
            store.write_steps(index, block_start, values)
            kept = [s for s in snapshots if s[0] <= run_last]
            if kept:
                store.write_histograms(
                    index,
                    np.array([s[1] for s in kept]),
                    torch.stack([s[2][slot][0] for s in kept]).numpy(),
                    torch.stack([s[2][slot][1] for s in kept]).numpy(),
                )
            if status == "running":
                stacked.load_into(slot, setup)
                state = unstacked_optimizer_state(optimizer, slot, setup)
                _save(store, index, setup, state, run_last)
            else:
                active.remove(slot)
            store.set_state(index, status, run_last)
            status_of[index] = status
            flushed += run_rows
        snapshots.clear()
        on_steps(flushed)
        scalars.fill_(float("nan"))
        block_start = last_step + 1

    for step in range(first_step, spec.steps + 1):
        row = step - block_start
        with torch.no_grad():
            if is_measured(step, spec.eval_every):
                loss, accuracy = evaluate_stacked(stacked, setups[0], settings.eval_batch_size)
                scalars[row, :, 2], scalars[row, :, 3] = loss, accuracy
            group_norms[row], scalars[row, :, 4] = norms()
            if step in hist_positions:
                taken = [histograms(slot) for slot in range(k)]
                snapshots.append((step, hist_positions[step], taken))
        if stacked.tables is not None:  # each run on its own rows (no padding)
            per_run = stacked.logits_ragged(data.ragged)
            losses = torch.stack(
                [
                    per_sample_loss(spec.loss, logits, labels).mean()
                    for logits, labels in zip(per_run, data.ragged_labels, strict=True)
                ]
            )
            with torch.no_grad():
                scalars[row, :, 0] = losses.detach()
                scalars[row, :, 1] = torch.stack(
                    [
                        (logits[:, : setups[0].n_classes].argmax(dim=1) == labels).float().mean()
                        for logits, labels in zip(per_run, data.ragged_labels, strict=True)
                    ]
                )
        else:  # one vmapped call on the padded rows, padding weighted 0
            logits = stacked.logits_each(data.inputs)
            losses = (per_sample_loss(spec.loss, logits, data.labels) * data.weights).sum(dim=1)
            with torch.no_grad():
                scalars[row, :, 0] = losses.detach()
                predicted = logits[..., : setups[0].n_classes].argmax(dim=-1)
                hits = ((predicted == data.labels).float() * data.real).sum(dim=1)
                scalars[row, :, 1] = hits / data.sizes
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        stopping = stop()
        if row + 1 == block or step == spec.steps or stopping:
            flush(step)
            if not active:
                return status_of
            if stopping and step < spec.steps:
                raise RunInterrupted(step)
    for slot in active:
        store.set_state(indices[slot], "done", spec.steps)
        status_of[indices[slot]] = "done"
    return status_of


def _make_stacked_optimizer(spec: RunSpec, stacked: StackedRuns) -> torch.optim.Optimizer:
    from runner.trainer import make_optimizer

    return make_optimizer(spec.optimizer, stacked.tensors())
