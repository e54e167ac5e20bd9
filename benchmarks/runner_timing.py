"""Time the runner's real path (``train_run`` into a fresh store on disk) and a bare loop.

Shared by the logging-overhead and the authors'-trainer benchmarks: both compare the runner, with
everything it logs and writes, against a loop that does less (or the same, the authors' way).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import synchronize
from runner.spec import RunSpec, StoreSettings
from runner.store import RunStore
from runner.trainer import build_run, train_run


def runner_seconds(
    spec: RunSpec,
    settings: StoreSettings,
    after_first_block: bool = False,
    on_flush: Callable[[], None] = lambda: None,
) -> float:
    """Seconds of one whole ``train_run`` (set-up, every step, flushes, checkpoints) into a new
    store in a temporary directory (store creation is not timed), on ``settings.device``.
    ``after_first_block``: only the steps after the first flush (``flush_every + 1 .. steps``,
    with their flushes and checkpoints), i.e. the steady per-step cost without the set-up and
    warm-up. ``on_flush()`` is called on the training thread after each flush, as its time is
    taken (``benchmarks.overlap`` reads the threads' CPU accounts there)."""
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    flushes: list[float] = []

    def flushed(_: int) -> None:
        synchronize(settings.device)  # a flush reads metrics to the host; be sure on any device
        flushes.append(time.perf_counter())
        on_flush()

    try:
        store = RunStore.create_or_open(tmp / "runs.zarr", [spec], settings, "benchmark")
        synchronize(settings.device)
        started = time.perf_counter()
        status = train_run(store, 0, settings, flushed)
        synchronize(settings.device)
        seconds = time.perf_counter() - started
        assert status == "done", status
        return flushes[-1] - flushes[0] if after_first_block else seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bare_seconds(
    spec: RunSpec,
    vocab_tables: bool = False,
    skip_steps: int = 0,
    on_mark: Callable[[], None] = lambda: None,
) -> float:
    """Seconds of a bare loop on the same model, data and optimiser: forward, loss, backward,
    step, nothing else (no metric, no norm, no test evaluation, no store). Set-up not timed, nor
    the first ``skip_steps`` steps (warm-up). ``vocab_tables``: the runner's tabled forward (the
    same function) instead of the model's plain one. ``on_mark()`` is called where the timing
    starts and where it ends."""
    setup = build_run(spec, torch.device("cpu"))
    model, optimizer = setup.model, setup.optimizer
    model.vocab_tables = vocab_tables
    model.train()
    started = time.perf_counter()
    for step in range(spec.steps):
        if step == skip_steps:
            on_mark()
            started = time.perf_counter()
        loss = F.cross_entropy(model(setup.train), setup.train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    on_mark()
    return seconds
