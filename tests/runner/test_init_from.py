"""Ungrokking: runs that start from another run's final weights, and the lineage they record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdsanalysis import open_runs, validate_store
from runner.grid import GridError, load_grid, parse_grid

CHILDREN = """\
name: ungrok
task: {p: 11}
model: {width: 32, depth: 1, heads: 4, n_positions: 8}
optimizer: {lr: 1.0e-3, weight_decay: 1.0}
seed: 0
n_samples: [20, 40]
steps: 10
init_from: {parent: {n_samples: 80, steps: 15}}
flush_every: 5
histogram: {every: 5, groups: [embedding], bins: 8}
"""


def test_parent_is_added_first_and_children_start_from_its_final_weights(tmp_path, run_cli):
    grid_path = tmp_path / "g.yaml"
    grid_path.write_text(CHILDREN)
    grid = load_grid(grid_path)
    parent, *children = grid.runs
    assert parent.n_samples == 80 and parent.steps == 15 and parent.init_from is None
    assert [c.n_samples for c in children] == [20, 40]
    assert all(c.lineage() == parent.run_id for c in children)

    run_cli("--grid", str(grid_path), "--out", str(tmp_path / "s.zarr"), "--quiet")
    validate_store(tmp_path / "s.zarr", deep=True)
    ds = open_runs(tmp_path / "s.zarr")
    assert list(ds.parent_run.values) == ["", parent.run_id, parent.run_id]
    assert (ds.status.values == "done").all()
    # The norm of the parent's final weights, over distinct parameters as the runner counts
    from runner.trainer import build_run

    setup = build_run(parent, torch.device("cpu"))
    state = torch.load(
        tmp_path / "s.zarr" / "_state" / "checkpoints" / f"{parent.run_id}.pt", weights_only=True
    )["model"]
    setup.model.load_state_dict(state)
    final = float(
        torch.sqrt(sum((p.detach().double() ** 2).sum() for p in setup.model.parameters()))
    )
    child_start = ds.param_norm_total.values[1:, 0]
    np.testing.assert_allclose(child_start, final, rtol=1e-5)
    # ... and not from a fresh initialisation, whose norm is the parent's own step 1.
    assert abs(ds.param_norm_total.values[0, 0] - final) > 1e-3


def test_a_child_before_its_parent_fails_clearly_and_a_rerun_recovers(tmp_path, run_cli):
    grid_path = tmp_path / "g.yaml"
    grid_path.write_text(CHILDREN)
    out = str(tmp_path / "s.zarr")
    first = run_cli("--grid", str(grid_path), "--out", out, "--runs", "1", "--quiet",
                    check=False)
    assert first.returncode == 1
    assert "init_from: parent: run" in first.stderr and "must be done first" in first.stderr
    assert open_runs(out).status.values.tolist() == ["pending", "failed", "pending"]
    run_cli("--grid", str(grid_path), "--out", out, "--quiet")
    assert (open_runs(out).status.values == "done").all()


def test_checkpoint_and_other_store_sources(tmp_path, run_cli):
    parent_grid = tmp_path / "parent.yaml"
    parent_grid.write_text(
        CHILDREN.replace("n_samples: [20, 40]", "n_samples: 80").replace(
            "init_from: {parent: {n_samples: 80, steps: 15}}\n", ""
        ).replace("steps: 10", "steps: 15")
    )
    first = tmp_path / "first.zarr"
    run_cli("--grid", str(parent_grid), "--out", str(first), "--quiet")
    parent_id = load_grid(parent_grid).runs[0].run_id
    checkpoint = first / "_state" / "checkpoints" / f"{parent_id}.pt"
    for source, name in (
        (f"{{checkpoint: '{checkpoint}'}}", "ckpt"),
        (f"{{store: '{first}', run: {parent_id}}}", "store"),
    ):
        grid = tmp_path / f"{name}.yaml"
        grid.write_text(
            CHILDREN.replace("init_from: {parent: {n_samples: 80, steps: 15}}",
                             f"init_from: {source}")
        )
        out = tmp_path / f"{name}.zarr"
        run_cli("--grid", str(grid), "--out", str(out), "--quiet")
        ds = open_runs(out)
        assert len(ds.run) == 2 and (ds.status.values == "done").all()
        # both children start from the same (the parent's final) weights
        assert ds.param_norm_total.values[0, 0] == ds.param_norm_total.values[1, 0]
        # ... and not from the parent's initialisation
        fresh = open_runs(first).param_norm_total.values[0, 0]
        assert abs(ds.param_norm_total.values[0, 0] - fresh) > 1e-3
        assert ds.parent_run.values[0] in (str(checkpoint), f"{first}#{parent_id}")


def test_bad_init_from_is_named(tmp_path, run_cli):
    with pytest.raises(GridError, match="init_from"):
        parse_grid(CHILDREN.replace("{parent: {n_samples: 80, steps: 15}}",
                                    "{parent: {n_samples: 80}, checkpoint: x.pt}"))
    with pytest.raises(GridError, match=r"init_from.parent: n_samples"):
        parse_grid(CHILDREN.replace("n_samples: 80, steps: 15", "n_samples: 5000"))
    grid = tmp_path / "g.yaml"
    grid.write_text(CHILDREN.replace("{parent: {n_samples: 80, steps: 15}}",
                                     "{checkpoint: missing.pt}"))
    result = run_cli("--grid", str(grid), "--out", str(tmp_path / "s.zarr"), "--quiet",
                     check=False)
    assert result.returncode == 1 and "init_from.checkpoint: no such file" in result.stderr
