"""Stores written under run-id scheme 1 are re-keyed by ``cds-run`` and lose nothing.

The scheme-1 stores here are written by the real store writer and trained by the real worker
(``RunStore.create_or_open(..., id_scheme=1)`` writes the ids, and lacks the attribute, exactly
as the versions before scheme 2 did), so their checkpoints and lock files carry scheme-1 names.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import schemas
from cdsanalysis import open_runs, validate_store
from runner.cli import app
from runner.grid import load_grid
from runner.migrate import old_to_new
from runner.run_identity import LEGACY_RUN_ID_SCHEME, RUN_ID_SCHEME, SCHEME_ATTRIBUTE
from runner.spec import RunSpec
from runner.storage import parse_location
from runner.store import RunStore
from runner.trainer import train_run
from runner.worker import Job, train_one

from .test_trainer import METRICS

#: A parent (n = 80, 40 steps) and two children continuing it on smaller subsets (60 steps).
GRID = """\
name: legacy
task: {p: 11}
n_samples: [30, 40]
seed: 0
model: {width: 32, depth: 1, heads: 4, n_positions: 8}
optimizer: {lr: 1.0e-3, weight_decay: 1.0}
init_from:
  parent: {n_samples: 80, steps: 40}
steps: 60
eval_every: 1
flush_every: 8
histogram: {every: 20, groups: [embedding, mlp], bins: 16, range: [-0.2, 0.2]}
"""
#: Calls of ``stop()`` after which run 2 is interrupted (it is asked once per step, and once
#: before the run starts): run 2 stops, flushed, about 20 steps into its 60.
STOP_AFTER_CALLS = 21
CHECKPOINTS = ("_state", "checkpoints")


def _train_legacy(path: str, grid) -> None:
    """Runs 0 and 1 to the end and run 2 interrupted, into a new scheme-1 store at ``path``."""
    RunStore.create_or_open(
        path, grid.runs, grid.settings, grid.text, id_scheme=LEGACY_RUN_ID_SCHEME
    )
    job = Job(path, grid.settings.model_dump(mode="json"), torch_threads=1)
    assert [train_one(job, i).status for i in (0, 1)] == ["done", "done"]
    calls = itertools.count()
    assert train_one(job, 2, stop=lambda: next(calls) >= STOP_AFTER_CALLS).status == "interrupted"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> tuple[Path, Path]:
    """A scheme-1 store of GRID (2 runs done, 1 interrupted) and the grid file."""
    base = tmp_path_factory.mktemp("legacy")
    grid_path = base / "grid.yaml"
    grid_path.write_text(GRID)
    _train_legacy(str(base / "s.zarr"), load_grid(grid_path))
    return base / "s.zarr", grid_path


@pytest.fixture(scope="module")
def clean(legacy, tmp_path_factory) -> Path:
    """The same grid trained by this version from scratch, without interruption."""
    store = tmp_path_factory.mktemp("clean") / "s.zarr"
    result = CliRunner().invoke(app, ["--grid", str(legacy[1]), "--out", str(store), "--quiet"])
    assert result.exit_code == 0, result.output
    return store


def _copy(legacy, tmp_path) -> Path:
    copy = tmp_path / "s.zarr"
    shutil.copytree(legacy[0], copy)
    return copy


def _snapshot(root: Path, skip: str = "\0") -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(skip)
    }


def _metrics(store: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(store), mode="r")
    return {name: root[name][...] for name in [*METRICS, "steps_done"]}


def _cds_run(grid_path: Path, store: Path):
    return CliRunner().invoke(app, ["--grid", str(grid_path), "--out", str(store)])


def _assert_rekeyed_and_complete(store: Path, before: dict, clean: Path, grid_path: Path) -> None:
    """The store is scheme 2, holds this grid's ids, kept every flushed step, and ends equal to
    an uninterrupted store (so the interrupted run resumed exactly)."""
    runs = load_grid(grid_path).runs
    new, old = [r.run_id for r in runs], [r.legacy_run_id() for r in runs]
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs[SCHEME_ATTRIBUTE] == RUN_ID_SCHEME
    assert [str(r) for r in root["run"][...]] == new
    assert [str(p) for p in root["parent_run"][...]] == ["", new[0], new[0]]
    assert old_to_new(parse_location(str(store))) == dict(zip(old, new, strict=True))
    names = sorted(p.name for p in store.joinpath(*CHECKPOINTS).iterdir())
    assert names == sorted(f"{i}.pt" for i in new)
    # the finished runs were not retrained: their checkpoints are the very files written before
    for i in (0, 1):
        assert (store.joinpath(*CHECKPOINTS) / f"{new[i]}.pt").read_bytes() == before[
            f"_state/checkpoints/{old[i]}.pt"
        ]
    validate_store(store, deep=True)
    ds = open_runs(store)
    assert ds.status.values.tolist() == ["done"] * 3
    after, reference = _metrics(store), _metrics(clean)
    for name, values in after.items():
        np.testing.assert_array_equal(values, reference[name], err_msg=name)


def test_cds_run_rekeys_a_legacy_store_and_loses_nothing(legacy, clean, tmp_path):
    store = _copy(legacy, tmp_path)
    runs = load_grid(legacy[1]).runs
    old = [r.legacy_run_id() for r in runs]
    root = zarr.open_group(str(store), mode="r")
    assert SCHEME_ATTRIBUTE not in root.attrs  # as every store written before scheme 2
    assert [str(r) for r in root["run"][...]] == old
    interrupted_at = int(root["steps_done"][2])
    assert 0 < interrupted_at < 60
    before, metrics_before = _snapshot(store), _metrics(store)

    result = _cds_run(legacy[1], store)

    assert result.exit_code == 0, result.output
    assert "upgraded its run ids from scheme 1 to 2 (3 runs, 3 checkpoints renamed" in result.output
    assert f"resumed at step {interrupted_at + 1}" in result.output
    assert "run 0 [" not in result.output and "run 1 [" not in result.output  # not retrained
    _assert_rekeyed_and_complete(store, before, clean, legacy[1])
    after = _metrics(store)
    for name in schemas.variables_with_role("metric"):  # dims (run, step, ...)
        values = metrics_before[name]
        # every step flushed before is still there, bit for bit
        np.testing.assert_array_equal(after[name][:2], values[:2], err_msg=name)
        np.testing.assert_array_equal(
            after[name][2, :interrupted_at], values[2, :interrupted_at], err_msg=name
        )
    # a second run finds nothing to do
    again = _cds_run(legacy[1], store)
    assert again.exit_code == 0 and "upgraded" not in again.output


@pytest.mark.parametrize("killed_after", ["first_checkpoint_renamed", "coordinate_rewritten"])
def test_a_killed_rekeying_is_finished_by_the_next_cds_run(legacy, clean, tmp_path, killed_after):
    """The states a kill can leave: checkpoints partly renamed with the coordinate still old,
    or everything done but the scheme attribute (written last)."""
    store = _copy(legacy, tmp_path)
    before = _snapshot(store)
    runs = load_grid(legacy[1]).runs
    pairs = [(r.legacy_run_id(), r.run_id) for r in runs]
    checkpoints = store.joinpath(*CHECKPOINTS)
    moved = pairs[:1] if killed_after == "first_checkpoint_renamed" else pairs
    for was, now in moved:
        (checkpoints / f"{was}.pt").rename(checkpoints / f"{now}.pt")
    if killed_after == "coordinate_rewritten":
        root = zarr.open_group(str(store), mode="r+")
        root["run"][...] = np.array([now for _, now in pairs], dtype=object)
        root["parent_run"][...] = np.array(["", pairs[0][1], pairs[0][1]], dtype=object)

    result = _cds_run(legacy[1], store)

    assert result.exit_code == 0, result.output
    assert "upgraded its run ids" in result.output
    _assert_rekeyed_and_complete(store, before, clean, legacy[1])


def test_a_run_held_by_a_live_process_blocks_the_rekeying(legacy, tmp_path):
    store = _copy(legacy, tmp_path)
    held = load_grid(legacy[1]).runs[1].legacy_run_id()
    lock = store / "_state" / "locks" / f"{held}.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "time.sleep(600)\n",
         str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(store, skip="_state/locks")
        result = _cds_run(legacy[1], store)
        assert result.exit_code == 2, result.output
        assert f"run 1 ({held}) is being trained by process" in result.output
        # nothing but lock files was touched
        assert _snapshot(store, skip="_state/locks") == before
    finally:
        holder.kill()
        holder.wait()
    result = _cds_run(legacy[1], store)
    assert result.exit_code == 0 and "upgraded its run ids" in result.output, result.output


def test_a_legacy_store_of_another_grid_is_refused_untouched(legacy, tmp_path):
    store = _copy(legacy, tmp_path)
    before = _snapshot(store)
    other = tmp_path / "other.yaml"
    other.write_text(GRID.replace("[30, 40]", "[30, 50]"))
    result = _cds_run(other, store)
    assert result.exit_code == 2 and "created from a different grid" in result.output
    assert _snapshot(store) == before


def test_a_stored_spec_this_version_cannot_read_is_named(tmp_path):
    """A store written by a version whose RunSpec had a field since removed."""
    from pydantic import create_model

    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(GRID.replace("init_from:\n  parent: {n_samples: 80, steps: 40}\n", ""))
    grid = load_grid(grid_path)
    assert len(grid.runs) == 2
    old_spec = create_model("OldRunSpec", __base__=RunSpec, warmup_steps=(int, 0))
    old_runs = [old_spec.model_validate(r.model_dump()) for r in grid.runs]
    store = tmp_path / "s.zarr"
    RunStore.create_or_open(
        store, old_runs, grid.settings, grid.text, id_scheme=LEGACY_RUN_ID_SCHEME
    )
    before = _snapshot(store)
    result = _cds_run(grid_path, store)
    assert result.exit_code == 2
    assert "run 0's stored spec cannot be read by this version of cds (warmup_steps:" in (
        result.output
    )
    assert _snapshot(store) == before


def test_an_fsspec_legacy_store_is_rekeyed(tmp_path):
    location = f"memory://legacy-{tmp_path.name}/s.zarr"
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(GRID)
    grid = load_grid(grid_path)
    _train_legacy(location, grid)
    loc = parse_location(location)
    old, new = [r.legacy_run_id() for r in grid.runs], [r.run_id for r in grid.runs]
    assert all(loc.exists(*CHECKPOINTS, f"{i}.pt") for i in old)
    before = RunStore(location)
    interrupted_at = before.state(2)[1]
    flushed = before.array("train_loss")[2, :interrupted_at]
    assert 0 < interrupted_at < 60

    store = RunStore.create_or_open(location, grid.runs, grid.settings, grid.text)

    assert store.migration is not None and store.migration.checkpoints_moved == 3
    assert store.run_ids == new and store.id_scheme == RUN_ID_SCHEME
    assert [loc.exists(*CHECKPOINTS, f"{i}.pt") for i in old] == [False] * 3
    assert [loc.exists(*CHECKPOINTS, f"{i}.pt") for i in new] == [True] * 3
    assert not any(loc.exists("_state", "leases", f"{i}.json") for i in old)
    # the child finds its parent's final weights under the new id, and resumes
    assert train_run(store, 2, grid.settings) == "done"
    assert store.state(2) == ("done", 60)
    np.testing.assert_array_equal(store.array("train_loss")[2, :interrupted_at], flushed)


def test_other_grids_naming_old_ids_still_find_their_weights(legacy, tmp_path):
    """``init_from`` written before the re-keying, by old id: a run of the store, or its
    checkpoint file."""
    store = _copy(legacy, tmp_path)
    parent_old = load_grid(legacy[1]).runs[0].legacy_run_id()
    assert _cds_run(legacy[1], store).exit_code == 0  # re-keys
    sources = {
        "by_run": f"{{store: '{store}', run: {parent_old}}}",
        "by_file": f"{{checkpoint: '{store}/_state/checkpoints/{parent_old}.pt'}}",
    }
    for name, source in sources.items():
        grid = tmp_path / f"{name}.yaml"
        grid.write_text(
            GRID.replace("init_from:\n  parent: {n_samples: 80, steps: 40}\n", "")
            .replace("[30, 40]", "30")
            .replace("steps: 60", f"steps: 10\ninit_from: {source}")
        )
        result = _cds_run(grid, tmp_path / f"{name}.zarr")
        assert result.exit_code == 0, result.output
        assert open_runs(tmp_path / f"{name}.zarr").status.values.tolist() == ["done"]
