"""``python -m benchmarks.gpu`` in its CPU mode (``--tiny --device cpu``), so that the GPU script
is known to run when a GPU is lent; and the settings the GPU run would use."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from benchmarks.gpu import FULL, HEADLINE, batch_grid_text
from runner.grid import parse_grid

PAPER_FIGURES = (
    "reference_ms_per_step",
    "runner_ms_per_step",
    "reference_steps_per_second",
    "runner_steps_per_second",
    "speedup_ratio",
    "peak_memory_mb_reference",
    "peak_memory_mb_runner",
)
BATCHED_FIGURES = (
    "sequential_seconds",
    "batched_seconds",
    "speedup_ratio",
    "steady_sequential_seconds",
    "steady_batched_seconds",
    "steady_speedup_ratio",
    "sequential_run_steps_per_second",
    "batched_run_steps_per_second",
    "peak_memory_mb_sequential",
    "peak_memory_mb_batched",
)


def _finite_positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_tiny_cpu_run_writes_every_figure(tmp_path, repository_root):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--device", "cpu", "--out", str(out)],
        cwd=repository_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and results["tiny"] is True
    assert _finite_positive(results["peak_memory_mb"])

    paper = results["paper"]
    assert "error" not in paper, paper.get("traceback")
    assert (paper["p"], paper["n_samples"], paper["eval_every"]) == (23, 200, 1)
    assert paper["full_batch"] is True
    assert paper["timed_steps"] == 2 and paper["repeats"] == 1
    for key in PAPER_FIGURES:
        assert _finite_positive(paper[key]), (key, paper[key])
    # The two sides train the same model from the same weights: the same first-step losses.
    differences = paper["max_abs_difference_first_steps"]
    assert max(differences["train_loss"], differences["test_loss"]) <= 1e-5

    for k in (2, 4):  # --tiny stands K = 2 and 4 in for 16 and 64
        section = results[f"batched_k{k}"]
        assert "error" not in section, section.get("traceback")
        assert section["k"] == k
        assert section["n_samples"] == [100, 200] and section["seeds"] == k // 2
        assert (section["p"], section["eval_every"], section["steps"]) == (47, 1, 4)
        for key in BATCHED_FIGURES:
            assert _finite_positive(section[key]), (k, key, section[key])
        # Batched and sequential training store the same losses (float rounding apart).
        assert section["max_abs_difference_train_loss"] <= 1e-4


def test_gpu_plan_is_the_issues_setting():
    """The settings a GPU run uses: the paper's p = 113, n = 2,000, and K = 16 and 64
    quickstart-size runs on the device named by --device."""
    assert (FULL.paper_p, FULL.paper_n_samples) == (113, 2000)
    assert FULL.batched_ks == (16, 64)
    assert {"paper", "batched_k16", "batched_k64"} == set(HEADLINE)
    for k in FULL.batched_ks:
        grid = parse_grid(batch_grid_text(FULL, k, "cuda"))
        assert len(grid.runs) == k
        assert grid.settings.device == "cuda"  # what the runner moves model and data to
        assert {run.n_samples for run in grid.runs} == {400, 800, 1200, 1600}
        for run in grid.runs:
            assert (run.task.p, run.eval_every, run.steps) == (47, 1, FULL.batched_steps)
            assert (run.model.width, run.model.depth) == (128, 1)


def test_k_not_a_multiple_of_the_data_sizes_is_refused():
    with pytest.raises(ValueError, match="batched_ks: K = 10 is not a multiple of the 4"):
        batch_grid_text(FULL, 10, "cuda")
