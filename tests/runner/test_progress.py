"""Live progress: rates, ETAs and lines computed by hand on a fake clock, and a real ``cds-run``
whose stdout goes to a file."""

from __future__ import annotations

import io
import math
import re
import subprocess

import numpy as np
import pytest
import torch
from rich.console import Console
from rich.progress import Progress, TextColumn
from typer.testing import CliRunner

from runner.cli import app
from runner.grid import load_grid
from runner.measuring import SCALARS
from runner.progress import (
    PlannedRun,
    ProgressView,
    Rate,
    RunSnapshot,
    StepReporter,
    StoreProgress,
    eta_seconds,
    format_duration,
    last_measured,
)
from runner.store import RunStore
from tests.runner.conftest import CDS_RUN


class FakeClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_counts_from_the_first_observation():
    rate = Rate()
    assert math.isnan(rate(5, 10.0))  # the origin: no rate yet
    assert math.isnan(rate(9, 10.0))  # no time passed: still none
    assert rate(45, 12.0) == 20.0  # (45 - 5) / (12 - 10)
    assert rate(65, 14.0) == 15.0  # (65 - 5) / (14 - 10): from the origin, not the last one


def test_eta_and_its_format():
    assert eta_seconds(300, 20.0) == 15.0
    assert eta_seconds(0, math.nan) == 0.0  # nothing left: known without a rate
    assert math.isnan(eta_seconds(10, math.nan)) and math.isnan(eta_seconds(10, 0.0))
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(math.nan) == "?"


def test_last_measured_takes_the_last_finite_row_per_column():
    nan = np.nan
    values = np.array([[0.1, 0.5], [0.2, nan], [nan, nan]])
    assert last_measured(values, np.array([9.0, 9.0])).tolist() == [0.2, 0.5]
    assert last_measured(np.full((2, 2), nan), np.array([0.7, 0.3])).tolist() == [0.7, 0.3]


def test_step_reporter_reads_only_when_due_and_sends_rate_and_last_accuracies():
    clock, sent = FakeClock(8.0), []
    reporter = StepReporter([4, 7], sent.extend, clock, interval_s=0.125)
    train, test = SCALARS.index("train_accuracy"), SCALARS.index("test_accuracy")
    block = torch.full((6, 2, len(SCALARS)), float("nan"))
    block[0, :, train] = torch.tensor([0.25, 0.5])
    block[0, 0, test] = 0.125  # run 4 measured its test accuracy at row 0, run 7 never

    reporter(1, block, 1)  # first call: always read; no rate yet
    assert [(s.index, s.steps_done, s.train_accuracy) for s in sent] == [(4, 1, 0.25), (7, 1, 0.5)]
    assert sent[0].test_accuracy == 0.125 and math.isnan(sent[1].test_accuracy)
    assert all(math.isnan(s.steps_per_s) for s in sent)

    clock.now = 8.0625  # before the next read is due: nothing sent
    reporter(2, block, 2)
    assert len(sent) == 2

    clock.now = 8.25
    block[1:5, :, train] = torch.tensor([0.75, 1.0])
    reporter(5, block, 5)
    assert [(s.index, s.steps_done) for s in sent[2:]] == [(4, 5), (7, 5)]
    assert sent[2].steps_per_s == 16.0  # (5 - 1) steps / 0.25 s
    assert (sent[2].train_accuracy, sent[3].train_accuracy) == (0.75, 1.0)
    assert sent[2].test_accuracy == 0.125  # still the last measured one

    clock.now = 8.5  # a flush emptied the block: the last measured values are kept
    block.fill_(float("nan"))
    reporter(6, block, 1)
    assert (sent[4].train_accuracy, sent[4].test_accuracy) == (0.75, 0.125)


def _view(clock, lines, bar=None):
    runs = {0: PlannedRun("abcdef123456", 100, 0), 1: PlannedRun("0123456789", 50, 10)}
    return ProgressView("tiny", runs, bar, lines.append, line_every_s=3.0, clock=clock)


def test_view_grid_rate_eta_and_lines_by_hand():
    clock, lines = FakeClock(0.0), []
    view = _view(clock, lines)
    assert view.total_steps == 140  # 100 + (50 - 10)
    view.update([RunSnapshot(0, 4, 0.5, math.nan, math.nan)])  # the grid's origin: 4 steps at 0 s
    clock.now = 2.0
    view.update([RunSnapshot(0, 20, 0.75, 0.25, 8.0)])
    assert view.steps_trained() == 20
    assert view.grid_steps_per_s == 8.0  # (20 - 4) / 2
    assert view.run_eta_s(view.latest[0]) == 10.0  # (100 - 20) / 8
    assert view.grid_eta_s() == 15.0  # (140 - 20) / 8
    assert lines == []  # the first lines are due at 3 s

    clock.now = 4.0
    view.update([RunSnapshot(1, 30, 1.0, 0.5, 10.0)])  # run 1 resumed at 10: 20 steps here
    assert view.steps_trained() == 40
    assert view.grid_steps_per_s == 9.0  # (40 - 4) / 4
    assert lines == [
        "run 0 abcdef12: step 20/100 train acc 0.750 test acc 0.250 8.0 steps/s ETA 0:00:10",
        "run 1 01234567: step 30/50 train acc 1.000 test acc 0.500 10.0 steps/s ETA 0:00:02",
        "grid tiny: runs 0/2 ended, steps 40/140 9.0 steps/s ETA 0:00:11",  # 100 / 9 = 11.1 s
    ]

    view.finish(0, 60)  # ended early (e.g. diverged) at step 60: 40 planned steps never come
    assert view.total_steps == 100 and view.steps_trained() == 80
    view.update([RunSnapshot(0, 70, 1.0, 1.0, 8.0)])  # a late snapshot of an ended run: ignored
    assert view.steps_trained() == 80
    clock.now = 6.5  # 2.5 s after the last lines: none yet
    view.lines_if_due()
    assert len(lines) == 3
    clock.now = 7.0
    view.lines_if_due()
    assert lines[3:] == [
        "run 1 01234567: step 30/50 train acc 1.000 test acc 0.500 10.0 steps/s ETA 0:00:02",
        "grid tiny: runs 1/2 ended, steps 80/100 9.0 steps/s ETA 0:00:02",
    ]


def test_view_draws_a_bar_per_running_run_and_one_for_the_grid():
    clock = FakeClock(0.0)
    bar = Progress(
        TextColumn("{task.description} {task.fields[detail]}"), console=Console(file=io.StringIO())
    )
    view = _view(clock, [], bar)
    view.update([RunSnapshot(1, 12, 0.5, math.nan, math.nan)])
    clock.now = 1.0
    view.update([RunSnapshot(1, 17, 0.5, math.nan, 7.0)])
    tasks = {t.description: t for t in bar.tasks}
    assert set(tasks) == {"tiny", "run 1 01234567"}
    assert (tasks["run 1 01234567"].completed, tasks["run 1 01234567"].total) == (17, 50)
    detail = tasks["run 1 01234567"].fields["detail"]
    assert detail == "17/50 7/s ETA 0:00:05 train 0.500 test -"  # (50 - 17) / 7 = 4.7 s
    assert (tasks["tiny"].completed, tasks["tiny"].total) == (7, 140)
    assert tasks["tiny"].fields["detail"] == "runs 0/2 7/140 5/s ETA 0:00:27"  # 133 / 5 = 26.6 s
    view.finish(1, 50)
    assert [t.description for t in bar.tasks] == ["tiny"]


def test_store_progress_reads_flushed_steps_and_accuracies(tmp_path, tiny_grid):
    # What the Dask executor's progress rests on: a real store, written as a flush writes it.
    grid = load_grid(tiny_grid(n_samples="[40, 80]", steps=60, flush_every=16))
    store = RunStore.create_or_open(tmp_path / "runs.zarr", grid.runs, grid.settings, grid.text)
    clock, lines = FakeClock(100.0), []
    runs = {i: PlannedRun(r.run_id, r.steps, 0) for i, r in enumerate(grid.runs)}
    view = ProgressView("tiny", runs, None, lines.append, line_every_s=1.0, clock=clock)
    poll = StoreProgress(store, [0, 1], view, flush_every=16, clock=clock, interval_s=0.5)

    store.set_state(0, "running", 0)
    poll()  # run 0 found running at 100 s: its rate counts from here; nothing flushed yet
    assert view.latest == {}
    train = np.linspace(0.0, 0.75, 16)
    test = np.full(16, np.nan)
    test[[4, 9]] = [0.125, 0.25]  # measured every 5 steps: step 10's is the last one
    store.write_steps(0, 1, {"train_accuracy": train, "test_accuracy": test})
    store.set_state(0, "running", 16)
    clock.now = 100.25  # before the next read is due
    poll()
    assert view.latest == {}
    clock.now = 102.0
    poll()
    assert view.latest == {0: RunSnapshot(0, 16, 0.75, 0.25, 8.0)}  # 16 steps / 2 s
    assert lines == [
        "run 0 " + grid.runs[0].run_id[:8] + ": step 16/60 train acc 0.750 test acc 0.250 "
        "8.0 steps/s ETA 0:00:06",  # (60 - 16) / 8 = 5.5 s
        "grid tiny: runs 0/2 ended, steps 16/120 - steps/s ETA ?",  # one observation so far
    ]


# -- a real cds-run, stdout to a file -----------------------------------------------------------
LINE = re.compile(
    r"^run 0 [0-9a-f]{8}: step (\d+)/200 train acc (\d\.\d{3}) test acc (\d\.\d{3}|-) "
    r"(\d+\.\d|-) steps/s ETA (\d+:\d\d:\d\d|\?)$"
)


def _cds_run_to_file(tmp_path, grid, *args):
    out = tmp_path / "stdout.txt"
    with out.open("w") as stdout:
        result = subprocess.run(
            [*CDS_RUN, "--grid", str(grid), "--out", str(tmp_path / "runs.zarr"), *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    return out.read_text().splitlines()


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_cds_run_to_a_file_writes_progress_lines(tmp_path, tiny_grid, executor):
    grid = tiny_grid(n_samples=40, steps=200, flush_every=100)
    extra = ["--workers", "1"] if executor == "processes" else []
    lines = _cds_run_to_file(
        tmp_path, grid, "--executor", executor, "--progress-every-seconds", "0.05", *extra
    )
    runs = [LINE.match(line) for line in lines if line.startswith("run ")]
    assert runs and all(runs), lines
    steps = [int(m.group(1)) for m in runs]
    assert steps == sorted(steps) and steps[-1] > 1, steps  # it moved between two lines
    assert any(m.group(3) != "-" for m in runs), lines  # a test accuracy was measured
    grid_lines = [line for line in lines if line.startswith("grid tiny: ")]
    assert grid_lines and re.match(r"grid tiny: runs [01]/1 ended, steps \d+/200 ", grid_lines[0])


def test_cds_run_writes_no_progress_lines_when_disabled(tmp_path, tiny_grid):
    # In this process (stdout captured: not a terminal), to spare a second torch start-up.
    grid = tiny_grid(n_samples=40, steps=200, flush_every=100)
    threads = torch.get_num_threads()
    try:
        args = ["--grid", str(grid), "--out", str(tmp_path / "runs.zarr")]
        result = CliRunner().invoke(app, [*args, "--progress-every-seconds", "0"])
    finally:
        torch.set_num_threads(threads)  # cds-run sets its own
    assert result.exit_code == 0, result.output
    assert "done 1" in result.stderr
    assert result.stdout == ""
