"""``cds-run --extend``: a store gains the new runs of a grid that keeps all of its own, and
only those are trained; what was trained before stays as it was."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from cdsanalysis import open_runs, validate_store

GRID = """\
name: extend
task: {{p: 11}}
n_samples: {sizes}
seed: {seeds}
model: {{width: 16, depth: 1, heads: 2, n_positions: 8}}
steps: 30
eval_every: 1
flush_every: 10
histogram: {{every: 10, groups: [embedding], bins: 4, range: [-0.2, 0.2]}}
"""


def _grid(tmp_path, name, sizes, seeds):
    path = tmp_path / name
    path.write_text(GRID.format(sizes=sizes, seeds=seeds))
    return path


def test_extend_adds_sizes_and_seeds_and_trains_only_them(tmp_path, run_cli):
    store = tmp_path / "runs.zarr"
    first = _grid(tmp_path, "first.yaml", "[20, 40]", "[0]")
    run_cli("--grid", str(first), "--out", str(store), "--quiet")
    before = open_runs(store)
    trained = {name: before[name].values.copy() for name in ("train_loss", "test_accuracy")}
    old_ids = [str(r) for r in before.run.values]

    wider = _grid(tmp_path, "wider.yaml", "[20, 30, 40]", "[0, 1]")
    refused = run_cli("--grid", str(wider), "--out", str(store), "--quiet", check=False)
    assert refused.returncode == 2 and "add the new ones with --extend" in refused.stderr
    result = run_cli("--grid", str(wider), "--out", str(store), "--quiet", "--extend")
    assert "--extend added 4 run(s) to its 2" in result.stderr

    after = open_runs(store)
    validate_store(store, deep=True)
    assert [str(r) for r in after.run.values[:2]] == old_ids  # the old runs keep their slots
    assert after.status.values.tolist() == ["done"] * 6
    pairs = sorted(zip(after.n_samples.values.tolist(), after.seed.values.tolist(), strict=True))
    assert pairs == [(20, 0), (20, 1), (30, 0), (30, 1), (40, 0), (40, 1)]
    for name, values in trained.items():  # untouched, bit for bit
        np.testing.assert_array_equal(after[name].values[:2], values, err_msg=name)
    assert zarr.open_group(str(store), mode="r").attrs["grid_yaml"] == wider.read_text()
    # again: nothing new, nothing trained, and the plain command now opens it as this grid
    again = run_cli("--grid", str(wider), "--out", str(store), "--quiet", "--extend")
    assert "added 0 run(s) to its 6 (nothing new in this grid)" in again.stderr
    run_cli("--grid", str(wider), "--out", str(store), "--quiet")


@pytest.mark.parametrize(
    ("sizes", "seeds", "message"),
    [
        ("[20]", "[0, 1]", "--extend only adds runs, and 1 of the store's runs are not in"),
        ("[20, 40, 60]", "[0]", None),
    ],
)
def test_extend_refuses_a_grid_that_drops_runs_or_changes_the_layout(
    tmp_path, run_cli, sizes, seeds, message
):
    store = tmp_path / "runs.zarr"
    run_cli("--grid", str(_grid(tmp_path, "a.yaml", "[20, 40]", "[0]")), "--out", str(store),
            "--quiet")  # fmt: skip
    grid = _grid(tmp_path, "b.yaml", sizes, seeds)
    text = grid.read_text()
    if message is None:  # other histogram settings: the layout differs
        grid.write_text(text.replace("bins: 4", "bins: 8"))
        message = "other histogram settings"
    result = run_cli("--grid", str(grid), "--out", str(store), "--extend", check=False)
    assert result.returncode == 2 and message in result.stderr
    assert open_runs(store).sizes["run"] == 2  # nothing added


def test_extend_is_not_for_a_search(tmp_path, run_cli):
    grid = tmp_path / "s.yaml"
    grid.write_text(GRID.format(sizes="{min: 20, max: 40}", seeds="0").replace("seed: 0\n", ""))
    result = run_cli(
        "--grid", str(grid), "--out", str(tmp_path / "s.zarr"), "--search", "cds",
        "--target-width", "0.5", "--extend", check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "a search continues by itself" in result.stderr


#: cds-run in its own process, killed (SIGKILL, no clean-up) at one point of the append of runs:
#: just before the first array grows, or just after the array named ``argv[1]`` has grown.
_KILLED_MID_APPEND = """
import os, signal, sys
import zarr
after = sys.argv.pop(1)
resize = zarr.Array.resize
def resize_then_die(self, *args, **kwargs):
    if after == "-":
        os.kill(os.getpid(), signal.SIGKILL)
    resize(self, *args, **kwargs)
    if self.basename == after:
        os.kill(os.getpid(), signal.SIGKILL)
zarr.Array.resize = resize_then_die
from runner.cli import main
main()
"""


@pytest.mark.parametrize("killed_after", ["-", "status", "run"])
def test_an_extend_killed_mid_append_is_rolled_back_and_completed(tmp_path, run_cli, killed_after):
    # "-": the journal written, nothing grown; "status": some arrays grown, others not; "run":
    # every array grown, the run ids not yet written.
    import subprocess
    import sys

    from cdsanalysis.validate import StoreValidationError

    store = tmp_path / "runs.zarr"
    first = _grid(tmp_path, "first.yaml", "[20, 40]", "[0]")
    run_cli("--grid", str(first), "--out", str(store), "--quiet")
    before = open_runs(store)
    trained = {name: before[name].values.copy() for name in ("train_loss", "test_accuracy")}

    wider = _grid(tmp_path, "wider.yaml", "[20, 30, 40]", "[0]")
    args = ["--grid", str(wider), "--out", str(store), "--extend", "--quiet"]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_APPEND, killed_after, *args], capture_output=True
    )
    assert killed.returncode == -9, killed.stderr
    with pytest.raises(StoreValidationError, match="append of runs to this store was interrupted"):
        open_runs(store)

    run_cli(*args)  # the same command again: rolls the append back, then adds and trains
    validate_store(store, deep=True)
    after = open_runs(store)
    assert after.sizes["run"] == 3 and set(after.status.values) == {"done"}
    assert not (store / "_state" / "append.json").exists()
    for name, values in trained.items():  # what was trained before stays as it was
        np.testing.assert_array_equal(after[name].values[:2], values, err_msg=name)
