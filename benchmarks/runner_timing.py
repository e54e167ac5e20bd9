"""Time the runner's real path (``train_run`` into a fresh store on disk) and a bare loop.

Shared by the logging-overhead and the authors'-trainer benchmarks: both compare the runner, with
everything it logs and writes, against a loop that does less (or the same, the authors' way).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from runner.spec import RunSpec, StoreSettings
from runner.store import RunStore
from runner.trainer import build_run, train_run


def runner_seconds(spec: RunSpec, settings: StoreSettings) -> float:
    """Seconds of one whole ``train_run`` (set-up, every step, flushes, checkpoints) into a new
    store in a temporary directory (store creation is not timed)."""
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        store = RunStore.create_or_open(tmp / "runs.zarr", [spec], settings, "benchmark")
        started = time.perf_counter()
        status = train_run(store, 0, settings)
        seconds = time.perf_counter() - started
        assert status == "done", status
        return seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bare_seconds(spec: RunSpec, vocab_tables: bool = False) -> float:
    """Seconds of a bare loop on the same model, data and optimiser: forward, loss, backward,
    step, nothing else (no metric, no norm, no test evaluation, no store). Set-up not timed.
    ``vocab_tables``: the runner's tabled forward (the same function) instead of the model's
    plain one."""
    setup = build_run(spec, torch.device("cpu"))
    model, optimizer = setup.model, setup.optimizer
    model.vocab_tables = vocab_tables
    model.train()
    started = time.perf_counter()
    for _ in range(spec.steps):
        loss = F.cross_entropy(model(setup.train), setup.train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started
