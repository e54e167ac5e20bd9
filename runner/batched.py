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
  decay; ``decay_scope: weights`` splits the stacked tensors into the same two parameter groups
  as a run's own optimiser), so a slice of the stacked update is the run's own update;
- metrics, norms, histograms: per run, on its slice, by the meters of :mod:`runner.measuring`
  that the sequential trainer uses too, kept and flushed by the same
  :class:`runner.recording.StepRecord` (metrics, checkpoint, steps_done, per run), with
  checkpoints in the one format of :mod:`runner.recording`, so a run may be resumed by either
  path. A run whose loss turns non-finite is marked ``diverged`` at that step, as alone; the
  others of its group train on to their end (its slice of the stacked tensors is its own, so the
  NaN reaches no other run's numbers). Likewise a run with ``stop_when`` whose outcome is
  decided ends ``done`` at that flush while the others train on (its slice is still computed,
  unrecorded, until the whole group has stopped).

``tests/runner/test_batched.py`` checks that batched training equals sequential training within
float tolerance. What a batched group cannot do is refused by :func:`batch_problem` (the
executor then trains that run alone).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import torch
from torch.func import functional_call

from runner.deciding import watch_for
from runner.environment import training_environment
from runner.measuring import (
    HistogramMeter,
    NormMeter,
    classification_loss,
    collapse_fraction,
    correct,
    softmax_collapsed,
    test_metrics,
)
from runner.models.gpt import tabled_answer_logits
from runner.recording import (
    COLLAPSE,
    StepRecord,
    StillMine,
    always_mine,
    checkpoint_bytes,
    load_checkpoint,
)
from runner.spec import ModularAdditionTask, RunSpec, StoreSettings
from runner.store import RunStore
from runner.trainer import RunInterrupted, RunSetup, build_run, make_optimizer


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


def train_group(
    store: RunStore,
    indices: Sequence[int],
    settings: StoreSettings,
    on_steps: Callable[[int], None] = lambda n: None,
    stop: Callable[[], bool] = lambda: False,
    distinct_rows: bool = True,
    still_mine: StillMine = always_mine,
    on_step: Callable[[int, torch.Tensor, int], None] | None = None,
) -> dict[int, str]:
    """Train runs ``indices`` of ``store`` together; return each run's final status.

    The runs must share :func:`group_key`, pass :func:`batch_problem`, be unfinished and have
    flushed the same number of steps (a group resumes together). The caller holds their locks.
    ``on_steps`` and ``stop`` are as for :func:`runner.trainer.train_run`; on a stop every run
    is flushed and :class:`~runner.trainer.RunInterrupted` is raised. ``on_step`` too (its buffer
    has a run axis of ``len(indices)``). ``distinct_rows``: use
    :class:`DistinctRows` for 1-layer models (off: the vmapped answer-position forward).
    ``still_mine(index)`` is asked before every write of a run; a run found taken over is
    written no more and ends :data:`~runner.recording.HELD` (the group stops once no run is
    left to write).
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
        if checkpoint is not None:
            done.add(load_checkpoint(checkpoint, setup.model, setup.optimizer, setup.noise))
        else:
            done.add(0)
    if len(done) != 1:
        raise ValueError("a batched group must resume from one step; train these runs apart")
    first_step = done.pop() + 1
    spec, first = specs[0], setups[0]  # what the runs share: everything but seed and data

    stacked = StackedRuns(setups, distinct_rows)
    named = [(n, stacked.params[n]) for n in stacked.names]
    optimizer = make_optimizer(spec.optimizer, named, stacked.template)
    stack_optimizer_state(optimizer, setups)
    data = PaddedData(setups)

    def test_logits(features: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = features["input_ids"]
        return stacked.logits_shared(inputs, distinct(inputs) if stacked.tables else None)

    environment = training_environment(device, f"batched ({stacked.k} runs)")
    record = StepRecord(
        store,
        indices,
        settings.flush_every,
        first_step,
        spec.eval_every,
        lambda: test_metrics(
            test_logits,
            first.test,
            first.test_y,
            spec.loss,
            first.n_classes,
            settings.eval_batch_size,
            runs=stacked.k,
        ),
        NormMeter(stacked.template, stacked.params),
        HistogramMeter(stacked.template, store.hist_groups, store.bin_edges, stacked.params),
        device,
        still_mine=still_mine,
        watches=[watch_for(s) for s in specs],
        classes=[setup.classes for setup in setups],
        environments=[{**environment, "data": s.data_sha256} for s in setups],
    )
    record.start()
    if not record.active:  # every run taken over (or decided) before its first step
        return record.finish(first_step - 1)
    scalars, block = record.scalars, settings.flush_every

    def save(slot: int, steps_done: int) -> bytes:
        setup = setups[slot]
        stacked.load_into(slot, setup)
        state = unstacked_optimizer_state(optimizer, slot, setup)
        return checkpoint_bytes(steps_done, setup.model.state_dict(), state, None)

    for step in range(first_step, spec.steps + 1):
        row = step - record.first_step
        record.measure(step, row)  # the weights before update ``step``
        if stacked.tables is not None:  # each run on its own rows (no padding)
            per_run = list(zip(stacked.logits_ragged(data.ragged), data.ragged_labels, strict=True))
            losses = torch.stack([classification_loss(spec.loss, x, y) for x, y in per_run])
            with torch.no_grad():
                scalars[row, :, 0] = losses.detach()
                scalars[row, :, 1] = torch.stack(
                    [correct(x, y, first.n_classes).float().mean() for x, y in per_run]
                )
                if record.batch_collapse(step):
                    scalars[row, :, COLLAPSE] = torch.stack(
                        [collapse_fraction(x, y) for x, y in per_run]
                    )
        else:  # one vmapped call on the padded rows, padding weighted 0
            logits = stacked.logits_each(data.inputs)
            per_sample = classification_loss(spec.loss, logits, data.labels, reduction="none")
            losses = (per_sample * data.weights).sum(dim=1)
            with torch.no_grad():
                scalars[row, :, 0] = losses.detach()
                hits = correct(logits, data.labels, first.n_classes).float() * data.real
                scalars[row, :, 1] = hits.sum(dim=1) / data.sizes
                if record.batch_collapse(step):
                    collapsed = softmax_collapsed(logits, data.labels).float() * data.real
                    scalars[row, :, COLLAPSE] = collapsed.sum(dim=1) / data.sizes
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        if on_step is not None:
            on_step(step, scalars, row + 1)
        stopping = stop()
        if row + 1 == block or step == spec.steps or stopping:
            on_steps(record.flush(step, save))
            if not record.active:  # every run diverged, stopped early or was taken over
                return record.finish(step)
            if stopping and step < spec.steps:
                raise RunInterrupted(step)
    return record.finish(spec.steps)
