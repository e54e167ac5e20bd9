"""What a training step measures, and where it is measured.

One implementation of each measurement serves both training paths: the sequential trainer
(:func:`runner.trainer.train_run`, one model) and the batched one
(:func:`runner.batched.train_group`, K runs' parameters stacked along a leading run axis). The
loss, the accuracy rule, the test evaluation and the norm and histogram meters below take either;
the meters' results always carry a run axis (of 1 for one model), so
:class:`runner.recording.StepRecord` stores both paths' measurements alike.

The measurements of step k (test loss and accuracy on their cadence, and on the same cadence,
for minibatch runs, the loss and accuracy on the whole training subset; per-group norms,
histograms) see the weights just before update k. With ``StoreSettings.measure_in_background``
(the default) the sequential trainer copies those weights into a shadow model (one fused copy, a
few microseconds for the modular models) and goes on with update k, while a worker thread
measures the copy (:class:`StepMeasurer`): on a machine with a spare core (or a GPU) the test
forward pass then costs the training loop almost nothing. The numbers are the same bit for bit
as measuring inline: the same operations on the same values (``tests/runner/test_measuring.py``).
Without it (``false``), the live model is measured inline, before the update, as before.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from runner.models.base import Classifier
from runner.spec import PARAM_GROUPS

#: Per-step scalar metrics, in buffer column order. ``train_set_*`` are measured on minibatch
#: runs only (NaN otherwise: a full-batch run's ``train_*`` already cover the whole training
#: subset), on the test cadence. The logit-scale metrics come from the test evaluation's own
#: logits; the softmax-collapse fraction from the logits of the whole training subset that the
#: run already has: the train-set evaluation (minibatch runs) or the step's own forward pass
#: (full batch), on the test cadence (schema descriptions: ``schemas/run_store_v1.json``).
SCALARS = (
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "param_norm_total",
    "train_set_loss",
    "train_set_accuracy",
    "test_logit_max_mean",
    "test_logit_norm_mean",
    "train_softmax_collapse_fraction",
)

#: Measure :attr:`StepMeasurer.target` (the weights before update ``step``) into buffer row
#: ``row``.
Measure = Callable[[int, int], None]


def is_measured(step: int, every_steps: int) -> bool:
    """Cadence rule shared by test evaluation: step 1 (the initialisation) and every k-th step."""
    return step == 1 or step % every_steps == 0


def classification_loss(
    kind: str, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy, or the squared error between softmax and one-hot summed over classes
    (seed 002's MSE loss), per sample (``none``) or averaged or summed over samples.

    ``logits`` is (..., samples, classes): leading axes (the runs of a stacked group) are kept,
    ``mean`` and ``sum`` reduce the sample axis only. ``labels`` is (..., samples), or (samples,)
    shared by every run.
    """
    if kind == "cross_entropy" and logits.dim() == 2 and reduction != "none":
        return F.cross_entropy(logits, labels, reduction=reduction)  # one fused kernel
    if labels.dim() < logits.dim() - 1:
        labels = labels.expand(logits.shape[:-1])
    if kind == "cross_entropy":
        flat = logits.reshape(-1, logits.shape[-1])
        per_sample = F.cross_entropy(flat, labels.reshape(-1), reduction="none")
        per_sample = per_sample.view(labels.shape)
    else:
        target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        per_sample = ((logits.softmax(dim=-1) - target) ** 2).sum(dim=-1)
    if reduction == "none":
        return per_sample
    return per_sample.mean(dim=-1) if reduction == "mean" else per_sample.sum(dim=-1)


def softmax_collapsed(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether each sample's softmax has collapsed (Prieto et al. 2025, "Grokking at the edge of
    numerical stability"): its float32 softmax gives the label's class probability exactly 1.0.

    Over every output the loss's softmax sees (all of ``logits``' last axis). Softmax subtracts
    the largest logit, so this holds when the label's class has the largest logit and adding
    the other classes' ``exp(z_j - z_max)`` to 1 leaves 1 in float32: surely when they sum
    below 2**-24 (6e-8), never when one alone exceeds it; between the two torch's summation
    order decides, as it does for the loss. The sample's cross-entropy is then exactly 0 and so
    is the gradient of its correct-class logit. ``logits`` (..., samples, classes) in any float
    type, computed in float32; ``labels`` (..., samples) or (samples,) shared by every run.
    """
    if labels.dim() < logits.dim() - 1:
        labels = labels.expand(logits.shape[:-1])
    probability = torch.softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1))
    return probability.squeeze(-1) == 1.0


def collapse_fraction(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of the samples of ``logits`` (..., samples, classes) whose softmax has
    collapsed (:func:`softmax_collapsed`): a scalar, or (runs,) for a stacked group."""
    return softmax_collapsed(logits, labels).float().mean(dim=-1)


def correct(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Whether each sample is predicted right: the argmax over the task's first ``n_classes``
    logits (a model may have more outputs, e.g. a token head) equals the label."""
    return logits[..., :n_classes].argmax(dim=-1) == labels


class SplitMetrics(NamedTuple):
    """What one evaluation of a split measures, each a mean over its samples: scalars, or
    (runs,) for a stacked group."""

    loss: torch.Tensor  # nats
    accuracy: torch.Tensor  # fraction
    logit_max_mean: torch.Tensor  # the largest logit of a sample
    logit_norm_mean: torch.Tensor  # the L2 norm of a sample's logit vector
    collapse_fraction: torch.Tensor  # fraction whose softmax collapsed (softmax_collapsed)


@torch.no_grad()
def test_metrics(
    logits_of: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    features: dict[str, torch.Tensor],
    labels: torch.Tensor,
    loss: str,
    n_classes: int,
    batch_size: int,
    runs: int | None = None,
) -> SplitMetrics:
    """Mean loss, accuracy, logit scale and softmax-collapse fraction over a whole split, in
    slices of ``batch_size`` samples, from the logits of one forward pass.

    ``logits_of(features)`` gives (samples, classes) logits of one model, or (runs, samples,
    classes) of a stacked group of ``runs``; the results are scalars or (runs,) accordingly.
    The logit scale is taken over every output the loss's softmax sees, in float32.
    """
    n = len(labels)
    shape = () if runs is None else (runs,)
    sums = torch.zeros((5, *shape), device=labels.device)  # loss, hits, max, norm, collapsed
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        logits = logits_of({k: v[rows] for k, v in features.items()})
        sums[0] += classification_loss(loss, logits, labels[rows], reduction="sum")
        sums[1] += correct(logits, labels[rows], n_classes).sum(dim=-1)
        scores = logits.float()
        sums[2] += scores.amax(dim=-1).sum(dim=-1)
        sums[3] += torch.linalg.vector_norm(scores, dim=-1).sum(dim=-1)
        sums[4] += softmax_collapsed(scores, labels[rows]).sum(dim=-1)
    return SplitMetrics(*(sums / n).unbind(0))


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
    """Per-group and total L2 norms (runs, groups) and (runs,), without a host sync: of
    ``model`` (runs = 1), or, given ``stacked`` (name -> (runs, ...) tensor, the names of
    ``model``'s parameters), of every run of a stacked group."""

    def __init__(self, model: Classifier, stacked: dict[str, torch.Tensor] | None = None):
        named = list(model.named_parameters())  # tied parameters appear once
        names = [n for n, _ in named]
        self.stacked = stacked is not None
        if stacked is None:
            self.params, self.runs = [p for _, p in named], 1
        else:
            self.params = [stacked[n].detach() for n in names]
            self.runs = len(self.params[0])
        self.group_index, self.absent = group_layout(model, names, self.params[0].device)

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.stacked:  # one fused norm call
            squares = (torch.stack(torch._foreach_norm(self.params)).float() ** 2).view(1, -1)
        else:  # per parameter, every run at once: (runs, params)
            squares = torch.stack([p.flatten(1).float().pow(2).sum(dim=1) for p in self.params]).T
        per_group = torch.zeros(self.runs, len(PARAM_GROUPS), device=squares.device)
        per_group.index_add_(1, self.group_index, squares)
        group_norms = per_group.sqrt().masked_fill(self.absent, float("nan"))
        return group_norms, squares.sum(dim=1).sqrt()


class HistogramMeter:
    """Weight histograms (runs, groups, bins) of chosen groups with fixed edges, and the count of
    values outside them (runs, groups); NaN for a group without parameters. Of ``model`` (runs =
    1) or, given ``stacked`` (as for :class:`NormMeter`), of every run of a stacked group."""

    def __init__(
        self,
        model: Classifier,
        groups: list[str],
        edges: np.ndarray,
        stacked: dict[str, torch.Tensor] | None = None,
    ):
        named = list(model.named_parameters())  # tied parameters appear once
        names = [n for n, _ in named]
        if stacked is None:
            slots = [dict(named)]
        else:  # run k's tensors: views of slot k, no copies
            runs = len(stacked[names[0]])
            slots = [{n: stacked[n].detach()[k] for n in names} for k in range(runs)]
        self.slots = [
            [[slot[n] for n in names if model.parameter_group(n) == g] for g in groups]
            for slot in slots
        ]
        self.low, self.high, self.bins = float(edges[0]), float(edges[-1]), len(edges) - 1

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        counts, outside = [], []
        for slot in self.slots:
            for params in slot:
                if not params:
                    counts.append(torch.full((self.bins,), float("nan")))
                    outside.append(torch.tensor(float("nan")))
                    continue
                flat = torch.cat([p.detach().flatten().float() for p in params])
                hist = torch.histc(flat, bins=self.bins, min=self.low, max=self.high)
                counts.append(hist.cpu())
                outside.append(torch.tensor(float(flat.numel())) - hist.sum().cpu())
        shape = (len(self.slots), -1)
        return torch.stack(counts).view(*shape, self.bins), torch.stack(outside).view(shape)


class StepMeasurer:
    """Runs ``measure(step, row)`` on :attr:`target` for each step, inline or on a worker thread.

    ``target`` is the model to measure: the live model (inline) or its shadow copy (background);
    build the meters on it, then :meth:`start`. ``submit`` returns once the weights may be
    updated; ``drain`` waits until every submitted measurement is in the buffers (call it before
    reading them, i.e. before each flush) and re-raises a worker's exception on the training
    thread; ``close`` stops the worker.
    """

    def __init__(self, model: Classifier, background: bool):
        self.background = background
        self.target = model
        self._measure: Measure | None = None
        self._error: BaseException | None = None
        self._pending = threading.Semaphore(1)  # one measurement in flight: one shadow copy
        if background:
            self.target = copy.deepcopy(model)  # deepcopy keeps tied parameters tied
            self.target.eval()
            # Parameters and buffers alike, refreshed by one fused copy per step.
            self._live = [*model.parameters(), *model.buffers()]
            self._copies = [*self.target.parameters(), *self.target.buffers()]
            self._jobs: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._work, name="cds-measure", daemon=True)

    def start(self, measure: Measure) -> None:
        self._measure = measure
        if self.background:
            self._thread.start()

    def submit(self, step: int, row: int) -> None:
        assert self._measure is not None, "start() first"
        if not self.background:
            self._measure(step, row)
            return
        self._pending.acquire()  # the previous measurement has finished with the shadow
        self._raise()
        with torch.no_grad():
            torch._foreach_copy_(self._copies, self._live)
        self._jobs.put((step, row))

    def drain(self) -> None:
        if self.background:
            self._pending.acquire()
            self._pending.release()
            self._raise()

    def close(self) -> None:
        """Stop the worker (after its current measurement); never raises, so that it may run
        while another exception is on its way out."""
        if self.background and self._thread.is_alive():
            self._pending.acquire()
            self._jobs.put(None)
            self._thread.join()
            self._pending.release()

    def _work(self) -> None:
        assert self._measure is not None
        # One intra-op thread here (a per-thread setting): the training thread keeps its own,
        # and a second OpenMP team would only fight it for the cores.
        torch.set_num_threads(1)
        while (job := self._jobs.get()) is not None:
            try:
                if self._error is None:
                    self._measure(*job)
            except BaseException as error:  # handed to the training thread by _raise
                self._error = error
            finally:
                self._pending.release()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
