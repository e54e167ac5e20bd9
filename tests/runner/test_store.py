"""Property-based fuzzing of store contents: a real store corrupted file by file. Readers raise the
named StoreValidationError (never a deep traceback) and ``cds-run`` refuses the store with exit 2,
leaving every byte of it as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cdsanalysis import open_runs, validate_store
from cdsanalysis.validate import StoreValidationError
from runner.cli import app
from runner.grid import load_grid
from runner.store import RunStore, StoreError
from runner.trainer import RunInterrupted, train_run

from .conftest import TINY_GRID


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path]:
    """A finished real store (2 runs x 20 steps) and its grid file."""
    base = tmp_path_factory.mktemp("pristine")
    grid_path = base / "grid.yaml"
    grid_path.write_text(
        TINY_GRID.format(p=11, n_samples="[40, 80]", seed=0, steps=20, eval_every=1, flush_every=8)
    )
    grid = load_grid(grid_path)
    store = RunStore.create_or_open(base / "s.zarr", grid.runs, grid.settings, grid.text)
    for i in range(len(grid.runs)):
        train_run(store, i, grid.settings)
    return base / "s.zarr", grid_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10**6), st.text(max_size=6), st.just([2, -1])
)


@st.composite
def corruptions(draw, files: list[str]):
    name = draw(st.sampled_from(files))
    kind = draw(st.sampled_from(["delete", "garbage", "truncate", "json"]))
    if kind == "json" and not name.endswith("zarr.json"):
        kind = "garbage"
    if kind == "json":
        key = draw(
            st.sampled_from(
                ["shape", "data_type", "fill_value", "dimension_names", "chunk_grid", "codecs",
                 "node_type", "attributes", "zarr_format"]
            )
        )  # fmt: skip
        sub = draw(
            st.sampled_from([None, "schema_name", "schema_version", "grid_yaml", "created_by"])
        )
        value = draw(st.one_of(st.just("<delete>"), json_values))
        return name, kind, (key, sub, value)
    if kind == "garbage":
        return name, kind, draw(st.binary(min_size=1, max_size=64))
    return name, kind, draw(st.integers(min_value=0, max_value=40))


def _apply(store: Path, name: str, kind: str, arg) -> None:
    path = store / name
    if kind == "delete":
        path.unlink()
    elif kind == "garbage":
        path.write_bytes(arg)
    elif kind == "truncate":
        path.write_bytes(path.read_bytes()[:arg])
    else:
        key, sub, value = arg
        meta = json.loads(path.read_text())
        target = meta
        if key == "attributes" and sub is not None:
            target, key = meta.setdefault("attributes", {}), sub
        if value == "<delete>":
            target.pop(key, None)
        else:
            target[key] = value
        path.write_text(json.dumps(meta))


def test_corrupted_stores_are_refused_by_name(pristine, tmp_path_factory):
    store, grid_path = pristine
    files = [f for f in _snapshot(store) if not f.startswith("_state")]

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(corruptions(files))
    def check(case):
        name, kind, arg = case
        copy = tmp_path_factory.mktemp("corrupt") / "s.zarr"
        shutil.copytree(store, copy)
        _apply(copy, name, kind, arg)
        before = _snapshot(copy)
        found = []  # which readers found a problem: [deep validation, open_runs]
        for read in (lambda: validate_store(copy, deep=True), lambda: open_runs(copy)):
            try:
                read()
                found.append(False)
            except StoreValidationError as exc:
                found.append(True)
                assert str(copy) in str(exc) and exc.problems
        if not any(found):
            return  # a harmless change (e.g. a chunk deleted reads as its fill value)
        try:
            validate_store(copy)  # the structural check cds-run makes before touching a store
            refused = False
        except StoreValidationError:
            refused = True
        result = CliRunner().invoke(app, ["--grid", str(grid_path), "--out", str(copy)])
        assert isinstance(result.exception, SystemExit) or result.exception is None, (
            result.exception
        )
        if refused:
            assert result.exit_code == 2, result.output
            assert "left untouched" in result.output or "not a cds run store" in result.output
        else:
            # only --deep sees it (a metric chunk); both runs are done, so nothing is rewritten
            assert result.exit_code == 0, result.output
        assert _snapshot(copy) == before  # every byte as it was
        analyze = CliRunner().invoke(cdsanalysis_app, ["validate", "--deep", str(copy)])
        assert analyze.exception is None or isinstance(analyze.exception, SystemExit)
        assert analyze.exit_code == (1 if found[0] else 0), analyze.output

    from cdsanalysis.cli import app as cdsanalysis_app

    check()


def test_a_store_of_another_grid_is_refused_untouched(pristine, tmp_path, tiny_grid):
    store, _ = pristine
    copy = tmp_path / "s.zarr"
    shutil.copytree(store, copy)
    before = _snapshot(copy)
    other = tiny_grid(n_samples="[40, 60]")
    result = CliRunner().invoke(app, ["--grid", str(other), "--out", str(copy)])
    assert result.exit_code == 2 and "created from a different grid" in result.output
    assert _snapshot(copy) == before


def test_a_run_trained_under_a_default_since_changed_is_refused_by_name(tmp_path, tiny_grid):
    """Ids leave defaults out, so a changed default keeps a run's id while changing what it
    means: the store's own spec_json (every field written out) tells them apart."""
    from pydantic import create_model

    from runner.spec import RunSpec

    grid = load_grid(tiny_grid())
    # the version that wrote the store defaulted alpha_scope to "weights" (this one: "all")
    before_change = create_model("RunSpecThen", __base__=RunSpec, alpha_scope=(str, "weights"))
    runs_then = [before_change.model_validate(r.model_dump(exclude={"alpha_scope"}))
                 for r in grid.runs]  # fmt: skip
    assert [r.run_id for r in runs_then] == [r.run_id for r in grid.runs]
    store = tmp_path / "s.zarr"
    RunStore.create_or_open(store, runs_then, grid.settings, grid.text)
    before = _snapshot(store)
    with pytest.raises(
        StoreError,
        match=r"run 0 \(\w{12}\) was trained with alpha_scope = "
        r"'weights' \(now 'all'\), which this version of cds takes by default",
    ):
        RunStore.create_or_open(store, grid.runs, grid.settings, grid.text)
    assert _snapshot(store) == before


def test_a_store_written_before_train_set_metrics_takes_them_when_resumed(tmp_path, tiny_grid):
    grid_path = tiny_grid(n_samples="[40]", steps=30, eval_every=10, flush_every=8)
    grid_path.write_text(grid_path.read_text() + "batch_size: 8\n")
    grid = load_grid(grid_path)
    path = tmp_path / "s.zarr"
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    stops = iter(range(1, 100))
    with pytest.raises(RunInterrupted, match="after step 8"):
        train_run(store, 0, grid.settings, stop=lambda: next(stops) == 8)
    # The earlier layout: no train_set_* arrays at all; it still validates and opens.
    for name in ("train_set_accuracy", "train_set_loss"):
        shutil.rmtree(path / name)
    validate_store(path, deep=True)
    assert np.isnan(open_runs(path).train_set_accuracy.values).all()
    # Opened to resume, the runner adds them (one run per chunk) and measures from then on.
    resumed = RunStore(path)
    group = zarr.open_group(str(path), mode="r")
    array = group["train_set_accuracy"]
    assert list(array.metadata.dimension_names) == ["run", "step"] and array.chunks[0] == 1
    assert train_run(resumed, 0, grid.settings) == "done"
    validate_store(path, deep=True)
    measured = np.flatnonzero(np.isfinite(open_runs(path).train_set_accuracy.values[0])) + 1
    assert measured.tolist() == [10, 20, 30]  # step 1 was flushed before the arrays existed


def test_appended_runs_grow_every_run_variable_and_train_in_a_process_that_cached_the_store(
    tmp_path, tiny_grid
):
    """``append_runs`` (the search's rounds): the store grows along 'run', stays valid, a run
    already there is not added twice, and an executor whose process cached the smaller store
    trains the new run."""
    from runner.executors import LocalExecutor
    from runner.stopping import StopRequest
    from runner.worker import Job

    small = load_grid(tiny_grid(n_samples="[40]", steps=12, flush_every=6))
    large = load_grid(tiny_grid(name="b.yaml", n_samples="[40, 60]", steps=12, flush_every=6))
    path = tmp_path / "grow.zarr"
    store = RunStore.create_or_open(path, small.runs, small.settings, small.text)
    job = Job(location=str(path), settings=small.settings.model_dump(mode="json"))
    outcomes = []
    LocalExecutor().run(job, [0], StopRequest(), outcomes.append)  # caches the 1-run store
    assert store.append_runs(large.runs) == [0, 1]
    assert store.append_runs(large.runs[1:]) == [1]  # already there: same index, not added
    LocalExecutor().run(job, [1], StopRequest(), outcomes.append)
    assert [o.status for o in outcomes] == ["done", "done"]
    validate_store(str(path))
    ds = open_runs(str(path))
    assert ds["n_samples"].values.tolist() == [40, 60]
    assert ds["status"].values.tolist() == ["done", "done"]
    assert ds["run"].values.tolist() == [r.run_id for r in large.runs]
    assert np.isfinite(ds["test_accuracy"].isel(run=1, step=-1).values)


def test_an_append_journal_of_a_live_process_is_not_rolled_back(pristine, tmp_path):
    # The journal's writer is alive on this host: it is appending now, not interrupted.
    import socket
    import subprocess

    from runner.store import recover_interrupted_append

    store = tmp_path / "s.zarr"
    shutil.copytree(pristine[0], store)
    live = subprocess.Popen(["sleep", "60"])
    try:
        journal = {"runs_before": 1, "holder": f"{socket.gethostname()}:{live.pid}:abc123"}
        (store / "_state" / "append.json").write_text(json.dumps(journal))
        before = _snapshot(store)
        with pytest.raises(StoreError, match=f"process {live.pid} is adding runs"):
            recover_interrupted_append(store)
        assert _snapshot(store) == before
    finally:
        live.kill()
        live.wait()
    # once its writer is gone the append counts as interrupted: every array back to 1 run
    assert recover_interrupted_append(store) == 1
    assert zarr.open_group(str(store), mode="r")["status"].shape == (1,)
    assert not (store / "_state" / "append.json").exists()
