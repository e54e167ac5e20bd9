"""What a training step records and how it reaches the store: one implementation for both paths.

The sequential trainer (:func:`runner.trainer.train_run`) records one run, the batched one
(:func:`runner.batched.train_group`) K runs at once; both keep their measurements in a
:class:`StepRecord` (a run axis of size 1 or K) and flush it with :meth:`StepRecord.flush`, in
the order that makes a crash at any point leave a prefix of steps that a resumed run continues
without gap or duplicate: per run, its metrics block and histograms, then its checkpoint, then
``steps_done``. A run whose training loss is not finite keeps its steps up to and including the
first such step and is marked ``diverged``; the other runs of a group are not affected.

Every write of a run (its classes and ``running`` state at the start, each flush, its ``done``
state at the end) is preceded by ``still_mine(run)``, the caller's check that this process still
holds the run's lease (:meth:`runner.leases.Lease.confirm`). A run found taken over by another
process is written no more, drops out of the record and ends ``held`` (:data:`HELD`): its state
in the store is the new holder's.

Runs with ``stop_when`` (:mod:`runner.deciding`) are given an :class:`~runner.deciding.OutcomeWatch`
each; at every flush a run whose outcome is decided is written like any block, then its
checkpoint, ``stop_reason`` and ``stop_step``, then its ``done`` state at that step; it drops out
of the record and the others of a group train on.

Checkpoints have one format (:func:`checkpoint_bytes` writes it, :func:`load_checkpoint` reads
it), so a run may be resumed by either path.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import schemas
from runner.deciding import BUDGET, OutcomeWatch
from runner.measuring import SCALARS, HistogramMeter, NormMeter, SplitMetrics, is_measured
from runner.spec import PARAM_GROUPS
from runner.store import RunStore

#: Version of the checkpoint layout written by :func:`checkpoint_bytes`, from the schema
#: (``checkpoint.format_version``). Checkpoints written before the field existed have this
#: layout too and are read as version 1.
CHECKPOINT_FORMAT: int = schemas.checkpoint_format()["format_version"]


def checkpoint_bytes(
    steps_done: int,
    model_state: dict,
    optimizer_state: dict,
    noise: torch.Generator | None,
) -> bytes:
    """A run's checkpoint after ``steps_done`` steps: weights, optimiser state, torch's global
    RNG state and the noise interventions' generator state (None without noise)."""
    buffer = io.BytesIO()  # bytes, so the store writes them: local file or object store alike
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "steps_done": steps_done,
            "model": model_state,
            "optimizer": optimizer_state,
            "torch_rng": torch.get_rng_state(),
            "noise_rng": noise.get_state() if noise is not None else None,
        },
        buffer,
    )
    return buffer.getvalue()


def load_checkpoint(
    data: bytes,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    noise: torch.Generator | None,
) -> int:
    """Restore what :func:`checkpoint_bytes` saved into ``model``, ``optimizer``, torch's RNG
    and ``noise``; return the checkpoint's ``steps_done``."""
    state = torch.load(io.BytesIO(data), map_location=next(model.parameters()).device)
    version = state.get("format", 1)
    if version != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint format {version} is not the one this runner reads ({CHECKPOINT_FORMAT});"
            " resume it with the version of cds that wrote it"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if noise is not None:
        noise.set_state(state["noise_rng"].cpu())
    return int(state["steps_done"])


#: ``still_mine(run_index)``: whether this process still holds the run's lease, asked right
#: before each write of the run (the worker passes :meth:`runner.leases.Lease.confirm`).
StillMine = Callable[[int], bool]


def always_mine(run_index: int) -> bool:
    """The ``still_mine`` of callers that hold no lease or need no check (tests, benchmarks)."""
    return True


#: The final status of a run whose lease was found taken over: nothing more was written. Not a
#: store status (the store keeps the new holder's); the worker reports it as ``held``.
HELD = "held"

#: ``checkpoint(slot, steps_done)``: the checkpoint bytes of the run in ``slot``.
Checkpoint = Callable[[int, int], bytes]
#: The test metrics of every run, scalars or (runs,) (or the same on the training subset, for
#: ``train_set``).
TestMetrics = Callable[[], SplitMetrics]

_TRAIN_SET = (SCALARS.index("train_set_loss"), SCALARS.index("train_set_accuracy"))
_TEST = tuple(
    SCALARS.index(n)
    for n in ("test_loss", "test_accuracy", "test_logit_max_mean", "test_logit_norm_mean")
)
#: Column of ``train_softmax_collapse_fraction``.
COLLAPSE = SCALARS.index("train_softmax_collapse_fraction")


class StepRecord:
    """The measurements of up to ``flush_every`` steps of the runs ``indices`` of ``store``,
    kept on the device until :meth:`flush`.

    Row ``r`` of :attr:`scalars` (rows, runs, ``SCALARS``) and :attr:`param_norm` (rows, runs,
    ``PARAM_GROUPS``) holds step ``first_step + r``; a column not measured at a step stays NaN.
    The training loop writes the train loss and accuracy (columns 0 and 1); :meth:`measure`
    writes the rest with the meters it was given. ``train_set`` (minibatch runs) gives the loss,
    accuracy and softmax-collapse fraction on the whole training subset (or its fixed subset),
    taken on the test cadence with the test metrics; without it the loss and accuracy columns
    stay NaN and the training loop gives the collapse fraction of its own forward pass over the
    whole subset (:meth:`batch_collapse`). ``still_mine`` is asked before every write of a run
    (module note); call :meth:`start` before the first step.
    """

    def __init__(
        self,
        store: RunStore,
        indices: Sequence[int],
        flush_every: int,
        first_step: int,
        eval_every: int,
        test: TestMetrics,
        norms: NormMeter,
        histograms: HistogramMeter,
        device: torch.device,
        train_set: TestMetrics | None = None,
        still_mine: StillMine = always_mine,
        watches: Sequence[OutcomeWatch | None] | None = None,
        classes: Sequence[tuple[int, float]] | None = None,
        environments: Sequence[dict[str, Any]] | None = None,
    ):
        self.store, self.indices, self.still_mine = store, list(indices), still_mine
        # per slot: what the run trains on (runner.environment), written by start()
        self.environments = list(environments) if environments is not None else None
        # per slot: (n_classes, chance_accuracy) of the run's task, written by start()
        self.classes = list(classes) if classes is not None else [None] * len(self.indices)
        # per slot: the early-stopping rule's view of the run (None: no stop_when)
        self.watches = list(watches) if watches is not None else [None] * len(self.indices)
        self.eval_every, self.test, self.train_set = eval_every, test, train_set
        self.norms, self.histograms = norms, histograms
        runs = len(self.indices)
        self.scalars = torch.full((flush_every, runs, len(SCALARS)), float("nan"), device=device)
        self.param_norm = torch.full(
            (flush_every, runs, len(PARAM_GROUPS)), float("nan"), device=device
        )
        self.first_step = first_step  # the step in row 0
        self.hist_positions = {int(s): i for i, s in enumerate(store.hist_steps)}
        # (step, position along hist_step, counts, outside) taken since the last flush
        self.snapshots: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []
        self.active = list(range(runs))  # slots still recorded: a diverged run's are not
        self.statuses = {i: "running" for i in self.indices}

    def _taken_over(self, slot: int) -> bool:
        """Whether the run in ``slot`` is no longer ours; if so it is recorded no more."""
        index = self.indices[slot]
        if self.still_mine(index):
            return False
        self.active.remove(slot)
        self.statuses[index] = HELD
        return True

    def start(self) -> None:
        """Record each run's classes (``classes``: its task's ``n_classes`` and the chance
        accuracy of its test set, on every attempt, so a store written before they existed
        takes them when a run resumes) and the environment it trains on, and mark it
        ``running`` from step ``first_step`` on (its steps before are done).

        A watched run reads its flushed steps back; one already decided (a crash between its
        stop and its ``done`` state) is marked ``done`` at once."""
        for slot in list(self.active):
            if self._taken_over(slot):
                continue
            index, watch = self.indices[slot], self.watches[slot]
            if self.classes[slot] is not None:
                self.store.set_classes(index, *self.classes[slot])
            if self.environments is not None:
                self.store.record_environment(index, self.environments[slot])
            self.store.set_state(index, "running", self.first_step - 1)
            if watch is not None:
                watch.load(self.store, index, self.first_step - 1)
                reason = watch.decide(self.first_step - 1) if self.first_step > 1 else ""
                if reason:
                    self._stop(slot, reason, self.first_step - 1)

    def _stop(self, slot: int, reason: str, step: int) -> None:
        """End the run in ``slot`` at ``step`` (flushed, with its checkpoint) for ``reason``."""
        index = self.indices[slot]
        self.store.set_stop(index, reason, step)
        self.store.set_state(index, "done", step)
        self.statuses[index] = "done"
        self.active.remove(slot)

    @torch.no_grad()
    def measure(self, step: int, row: int) -> None:
        """Test metrics and train-set metrics (on their cadence), norms and histograms (at a
        histogram step) of the weights before update ``step``, into row ``row``."""
        if is_measured(step, self.eval_every):
            test = self.test()
            for column, value in zip(_TEST, test[:4], strict=True):
                self.scalars[row, :, column] = value
            if self.train_set is not None:
                train = self.train_set()
                self.scalars[row, :, _TRAIN_SET[0]] = train.loss
                self.scalars[row, :, _TRAIN_SET[1]] = train.accuracy
                self.scalars[row, :, COLLAPSE] = train.collapse_fraction
        self.param_norm[row], self.scalars[row, :, 4] = self.norms()
        if step in self.hist_positions:
            self.snapshots.append((step, self.hist_positions[step], *self.histograms()))

    def batch_collapse(self, step: int) -> bool:
        """Whether the training loop gives the softmax-collapse fraction of step ``step``
        (into column :data:`COLLAPSE`), from the logits of its own forward pass: full-batch
        runs (that pass covers the whole training subset, before update ``step``), on the
        test cadence. Minibatch runs take it from their train-set evaluation instead."""
        return self.train_set is None and is_measured(step, self.eval_every)

    def flush(self, last_step: int, checkpoint: Checkpoint) -> int:
        """Write steps ``first_step..last_step`` of every active run into the store; return the
        number of steps written (over all runs). Call it only once the measurements are in."""
        rows = last_step - self.first_step + 1
        scalars = self.scalars[:rows].cpu().numpy()
        norms = self.param_norm[:rows].cpu().numpy()
        written = 0
        for slot in list(self.active):
            if self._taken_over(slot):
                continue
            index = self.indices[slot]
            run_rows, run_last, status = rows, last_step, "running"
            bad = np.flatnonzero(~np.isfinite(scalars[:, slot, 0]))
            if len(bad):  # keep the steps up to and including the first non-finite loss
                run_rows, status = int(bad[0]) + 1, "diverged"
                run_last = self.first_step + run_rows - 1
            values = {
                name: scalars[:run_rows, slot, i]
                for i, name in enumerate(SCALARS)
                if self.train_set is not None or i not in _TRAIN_SET  # never measured: fill
            }
            values["param_norm"] = norms[:run_rows, slot]
            self.store.write_steps(index, self.first_step, values)
            kept = [s for s in self.snapshots if s[0] <= run_last]  # none after a divergence
            if kept:
                self.store.write_histograms(
                    index,
                    np.array([s[1] for s in kept]),
                    torch.stack([s[2][slot] for s in kept]).numpy(),
                    torch.stack([s[3][slot] for s in kept]).numpy(),
                )
            written += run_rows
            if status == "running":
                # atomic: the old checkpoint or the new one
                self.store.write_checkpoint(index, checkpoint(slot, run_last))
                watch = self.watches[slot]
                if watch is not None:
                    watch.add(self.first_step, values)
                    reason = watch.decide(run_last)
                    if reason:
                        self._stop(slot, reason, run_last)
                        continue
            else:
                self.active.remove(slot)
            self.store.set_state(index, status, run_last)
            self.statuses[index] = status
        self.snapshots.clear()
        self.scalars.fill_(float("nan"))
        self.first_step = last_step + 1
        return written

    def finish(self, steps: int) -> dict[int, str]:
        """Mark the runs still active ``done`` after ``steps`` steps (all flushed); return every
        run's final status (``done``, ``diverged`` or :data:`HELD`). Their last checkpoint
        stays: it holds the final weights (for continuing or ungrokking)."""
        for slot in list(self.active):
            if not self._taken_over(slot):
                if self.watches[slot] is not None:  # every planned step, undecided
                    self.store.set_stop(self.indices[slot], BUDGET, steps)
                self.store.set_state(self.indices[slot], "done", steps)
                self.statuses[self.indices[slot]] = "done"
        return dict(self.statuses)
