"""Initial weights from elsewhere (``RunSpec.init_from``): ungrokking and continued training.

The source is the parent run in the same store, a run of another store, or a checkpoint file.
Only finished runs give weights: a run's last checkpoint holds its final weights once it is
``done``. A source that does not exist, is unfinished or does not fit the model is an error that
names ``init_from`` and what to do, and fails only this run.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from runner.migrate import renamed_checkpoint
from runner.spec import RunSpec
from runner.store import RunStore


class InitFromError(RuntimeError):
    """The initial weights named by ``init_from`` cannot be used (yet)."""


def _final_checkpoint(store: RunStore, run_id: str, what: str) -> bytes:
    index = store.index_of(run_id)  # an id from before the store was re-keyed is found too
    if index is None:
        raise InitFromError(f"init_from: {what}: run {run_id} is not in store {store.path}")
    status, steps_done = store.state(index)
    if status != "done":
        raise InitFromError(
            f"init_from: {what}: run {run_id} (index {index}) is {status} at step {steps_done}; "
            "it must be done first (re-run cds-run once it has finished)"
        )
    data = store.read_checkpoint(index)
    if data is None:
        raise InitFromError(f"init_from: {what}: run {run_id} is done but has no checkpoint")
    return data


def load_initial_weights(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    spec: RunSpec,
    store: RunStore | None,
    device: torch.device,
) -> None:
    """Load the weights (and, if asked, the optimiser state) named by ``spec.init_from``."""
    source = spec.init_from
    assert source is not None
    if source.parent is not None:
        if store is None:
            raise InitFromError("init_from.parent needs the run's store")
        parent = spec.parent_spec()
        assert parent is not None
        data = _final_checkpoint(store, parent.run_id, "parent")
        where = f"parent run {parent.run_id}"
    elif source.checkpoint is not None:
        path = renamed_checkpoint(Path(source.checkpoint))  # its store may have been re-keyed
        if not path.is_file():
            raise InitFromError(
                f"init_from.checkpoint: no such file {path} (relative paths are resolved against "
                f"the current directory, {Path.cwd()})"
            )
        data, where = path.read_bytes(), str(path)
    else:
        assert source.store is not None and source.run is not None
        try:
            other = RunStore(source.store)
        except Exception as exc:
            raise InitFromError(f"init_from.store: cannot open {source.store}: {exc}") from None
        data = _final_checkpoint(other, source.run, f"store {source.store}")
        where = f"run {source.run} of {source.store}"
    state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    weights = state["model"] if isinstance(state, dict) and "model" in state else state
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise InitFromError(
            f"init_from: the weights of {where} do not fit this run's model "
            f"({spec.model.family}, width {spec.model.width}, depth {spec.model.depth}): "
            f"{str(exc).splitlines()[0]}; give the parent's model settings"
        ) from None
    if source.optimizer_state:
        if not (isinstance(state, dict) and "optimizer" in state):
            raise InitFromError(
                f"init_from.optimizer_state: {where} holds no optimiser state (only cds-run "
                "checkpoints do); set optimizer_state: false"
            )
        optimizer.load_state_dict(state["optimizer"])
