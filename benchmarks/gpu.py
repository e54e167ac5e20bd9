"""GPU figures: the paper's setting against the authors'-style trainer, batched against sequential
runs, and peak GPU memory; printed and written as JSON. Meant to finish within 8 minutes on one
GPU.

    python -m benchmarks.gpu [--out benchmarks/gpu_results.json] [--device cuda]
    python -m benchmarks.gpu --tiny --device cpu --out /tmp/gpu.json   # CPU check (the suite's)

Sections, each timed with its two sides alternated (A, B, A, B, ...) and medians compared:

``paper``
    Steps/s of ``train_run`` (every metric every step into a real store: train and test loss and
    accuracy on the whole test split, norms, histograms every 100 steps, flushes with
    checkpoints) against :func:`benchmarks.authors_reference.reference_loop` (the authors' way:
    HF head over all 7 tokens, test forward with autograd, one host sync per parameter norm and
    per logged number), both with model and data on the device. p = 113, n = 2,000 (test 3,193),
    the 1-layer GPT d = 128, full batch, AdamW. Steady cost: steps ``flush_every + 1 .. steps``
    (the first block is the warm-up: CUDA context, lazy kernel loading, allocator growth). The
    two sides' step-1 and step-2 metrics are compared too (difference recorded).
``batched_k16``, ``batched_k64``
    K quickstart-size runs (p = 47, GPT d = 128 depth 1, AdamW, every metric every step; n
    spread over the quickstart's range, 400 / 800 / 1,200 / 1,600, times K / 4 seeds) trained
    by ``runner.worker.train_batch`` as one group (what ``cds-run --executor batched
    --batch-runs K`` does) against ``runner.worker.train_one`` for each run in turn, each into its
    own real store on ``StoreSettings.device``. Whole time (set-up, every step, flushes,
    checkpoints; store creation not timed) and steady time (steps after each run's, or the
    group's, first flush) are both given; the stores' train losses are compared.

Every timed side is bracketed by ``torch.cuda.synchronize`` and its peak memory taken with
``torch.cuda.reset_peak_memory_stats`` / ``max_memory_allocated`` (on a CPU: the process's peak
resident set; see :class:`benchmarks.common.PeakMemory`).

Time bound. Step counts are chosen from a generous guess of a CUDA step on a small model, which
is launch- and host-bound, not FLOP-bound: 5-20 ms for the runner (forward, backward, AdamW,
the measuring thread's test forward and norms), up to ~20 ms for the reference (about 20 host
syncs a step), about 1 s per run for set-up, flushes and checkpoints. Then ``paper`` (300 steps,
3 repeats of both sides) takes 20-40 s; ``batched_k16`` (150 steps: 16 sequential runs against
one group) 30-80 s a repeat; ``batched_k64`` 100-250 s a repeat. Each section also has a time
budget (``Plan.budgets_seconds``): another repeat starts only if it is expected to end within it,
and a section starts with its budget cut to what is left of ``--budget-seconds`` (420 s for all
sections; a section with nothing left is skipped and says so). With CUDA start-up and imports
(~30 s) the whole stays under 8 minutes unless a single repeat is far slower than guessed. A
section that fails records its error and traceback and the next one runs; the JSON is rewritten
after every section, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from benchmarks.common import (
    PeakMemory,
    alternate,
    load_average,
    machine,
    median,
    synchronize,
)

DEFAULT_OUT = Path(__file__).with_name("gpu_results.json")
QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"

#: Headline figures of each section (what ``benchmarks.common.summarise`` reports).
HEADLINE = {
    "paper": ("speedup_ratio", "runner_steps_per_second", "reference_steps_per_second"),
    "batched_k16": ("speedup_ratio", "steady_speedup_ratio", "peak_memory_mb_batched"),
    "batched_k64": ("speedup_ratio", "steady_speedup_ratio", "peak_memory_mb_batched"),
}


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run (steps per side, repeats, time budgets in seconds)."""

    paper_p: int = 113
    paper_n_samples: int = 2000
    paper_steps: int = 300
    paper_flush_every: int = 100
    paper_repeats: int = 3
    batched_ks: tuple[int, ...] = (16, 64)
    batched_n_samples: tuple[int, ...] = (400, 800, 1200, 1600)
    batched_steps: int = 150
    batched_flush_every: int = 50
    batched_repeats: int = 3
    #: train a short batched group and a short run before timing (CUDA kernel loading)
    warm_up: bool = True
    #: per section; another repeat starts only when expected to end within it
    budgets_seconds: tuple[tuple[str, float], ...] = (
        ("paper", 90.0),
        ("batched_k16", 110.0),
        ("batched_k64", 220.0),
    )


#: The GPU plan (the issue's settings).
FULL = Plan()
#: The CPU check: every section and figure, at sizes that take seconds on 2 cores. K = 2 and 4
#: stand in for 16 and 64 (sequential K = 64 runs on a CPU alone would take minutes).
TINY = Plan(
    paper_p=23,
    paper_n_samples=200,
    paper_steps=4,
    paper_flush_every=2,
    paper_repeats=1,
    batched_ks=(2, 4),
    batched_n_samples=(100, 200),
    batched_steps=4,
    batched_flush_every=2,
    batched_repeats=1,
    warm_up=False,
    budgets_seconds=(("paper", 60.0), ("batched_k2", 60.0), ("batched_k4", 60.0)),
)


def paper(plan: Plan, device: str, budget_seconds: float) -> dict:
    """Section ``paper``: the runner against the authors'-style loop on ``device``."""
    from benchmarks.authors_reference import paper_spec, reference_loop, runner_first_steps
    from benchmarks.runner_timing import runner_seconds
    from runner.spec import StoreSettings

    p, n, steps, warm = plan.paper_p, plan.paper_n_samples, plan.paper_steps, plan.paper_flush_every
    settings = StoreSettings(name="gpu-bench", flush_every=warm, device=device)
    check_steps = 2
    ours = runner_first_steps(paper_spec(check_steps, p, n), settings)
    _, theirs = reference_loop(paper_spec(check_steps, p, n), check_steps, device)
    differences = {
        name: max(abs(float(ours[name][k]) - theirs[k][name]) for k in range(check_steps))
        for name in ours
    }
    spec = paper_spec(steps, p, n)
    memory = PeakMemory(device)
    peaks: dict[str, list[float]] = {"runner": [], "reference": []}

    def measured(name: str, timed: Callable[[], float]) -> Callable[[], float]:
        def side() -> float:
            memory.reset()
            seconds = timed()
            peaks[name].append(memory.peak_mb())
            return seconds

        return side

    times = alternate(
        {
            "reference": measured(
                "reference", lambda: reference_loop(spec, steps, device, skip_steps=warm)[0]
            ),
            "runner": measured(
                "runner", lambda: runner_seconds(spec, settings, after_first_block=True)
            ),
        },
        plan.paper_repeats,
        budget_seconds,
    )
    timed_steps = steps - warm
    reference, runner = median(times["reference"]), median(times["runner"])
    return {
        "what": "steps/s of runner train_run (every metric every step, real store) over a loop "
        "behaving like the authors' trainer, both on the device; steady steps only",
        "p": p,
        "n_samples": n,
        "full_batch": True,
        "eval_every": 1,
        "steps": steps,
        "timed_steps": timed_steps,
        "repeats": len(times["runner"]),
        "reference_ms_per_step": 1e3 * reference / timed_steps,
        "runner_ms_per_step": 1e3 * runner / timed_steps,
        "reference_steps_per_second": timed_steps / reference,
        "runner_steps_per_second": timed_steps / runner,
        "speedup_ratio": reference / runner,
        "peak_memory_mb_reference": max(peaks["reference"]),
        "peak_memory_mb_runner": max(peaks["runner"]),
        "max_abs_difference_first_steps": differences,
        "load_average": load_average(),
    }


def batch_grid_text(plan: Plan, k: int, device: str, steps: int | None = None) -> str:
    """The quickstart grid with ``k`` runs (its n values x ``k / len(n values)`` seeds),
    ``plan.batched_steps`` steps (or ``steps``), on ``device``."""
    sizes = plan.batched_n_samples
    if k % len(sizes):
        raise ValueError(
            f"batched_ks: K = {k} is not a multiple of the {len(sizes)} n values "
            f"{list(sizes)}; choose K as a multiple of {len(sizes)}"
        )
    grid = yaml.safe_load(QUICKSTART.read_text())
    grid.update(
        name=f"gpu-bench-k{k}",
        n_samples=list(sizes),
        seed=list(range(k // len(sizes))),
        steps=steps or plan.batched_steps,
        flush_every=plan.batched_flush_every,
        device=device,
    )
    return yaml.safe_dump(grid, sort_keys=False)


def train_k(text: str, batched: bool, keep: list | None = None) -> tuple[float, float]:
    """Train every run of grid ``text`` into a new store: one ``train_batch`` group or
    ``train_one`` per run. Returns (whole seconds, steady seconds: after each first flush)."""
    from runner.grid import parse_grid
    from runner.store import RunStore
    from runner.worker import Job, train_batch, train_one

    grid = parse_grid(text)
    device = grid.settings.device
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-gpu-"))
    try:
        location = str(tmp / "runs.zarr")
        RunStore.create_or_open(location, grid.runs, grid.settings, grid.text)
        job = Job(location=location, settings=grid.settings.model_dump())
        indices = list(range(len(grid.runs)))
        flushes: list[list[float]] = []

        def flushed(_: int) -> None:
            synchronize(device)
            flushes[-1].append(time.perf_counter())

        synchronize(device)
        started = time.perf_counter()
        if batched:
            flushes.append([])
            outcomes = train_batch(job, indices, on_steps=flushed)
        else:
            outcomes = []
            for index in indices:
                flushes.append([])
                outcomes.append(train_one(job, index, on_steps=flushed))
        synchronize(device)
        seconds = time.perf_counter() - started
        bad = [f"run {o.index}: {o.status} {o.message}" for o in outcomes if o.status != "done"]
        if bad:
            raise RuntimeError("runs did not finish: " + "; ".join(bad))
        if keep is not None:
            keep.append(RunStore(location).array("train_loss")[...])
        return seconds, sum(times[-1] - times[0] for times in flushes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def batched(plan: Plan, k: int, device: str, budget_seconds: float) -> dict:
    """Section ``batched_k{k}``: one batched group of ``k`` runs against ``k`` sequential runs."""
    text = batch_grid_text(plan, k, device)
    warm_up = batch_grid_text(plan, len(plan.batched_n_samples), device, plan.batched_flush_every)
    if plan.warm_up:  # CUDA kernels of both paths loaded before any timing
        train_k(warm_up, batched=True)
        train_k(warm_up, batched=False)
    memory = PeakMemory(device)
    peaks: dict[str, list[float]] = {"sequential": [], "batched": []}
    steady: dict[str, list[float]] = {"sequential": [], "batched": []}
    losses: list[np.ndarray] = []

    def side(name: str) -> Callable[[], float]:
        def timed() -> float:
            memory.reset()
            keep = losses if len(losses) < 2 else None  # the first repeat's stores compared
            whole, steady_seconds = train_k(text, batched=name == "batched", keep=keep)
            peaks[name].append(memory.peak_mb())
            steady[name].append(steady_seconds)
            return whole

        return timed

    times = alternate(
        {"sequential": side("sequential"), "batched": side("batched")},
        plan.batched_repeats,
        budget_seconds,
    )
    sequential, together = median(times["sequential"]), median(times["batched"])
    run_steps = k * plan.batched_steps
    return {
        "what": "K runs trained as one batched group (runner.worker.train_batch) over the same "
        "runs one after another (runner.worker.train_one), real stores, on the device",
        "k": k,
        "p": yaml.safe_load(text)["task"]["p"],
        "n_samples": list(plan.batched_n_samples),
        "seeds": k // len(plan.batched_n_samples),
        "eval_every": 1,
        "steps": plan.batched_steps,
        "flush_every": plan.batched_flush_every,
        "repeats": len(times["batched"]),
        "sequential_seconds": sequential,
        "batched_seconds": together,
        "speedup_ratio": sequential / together,
        "steady_sequential_seconds": median(steady["sequential"]),
        "steady_batched_seconds": median(steady["batched"]),
        "steady_speedup_ratio": median(steady["sequential"]) / median(steady["batched"]),
        "sequential_run_steps_per_second": run_steps / sequential,
        "batched_run_steps_per_second": run_steps / together,
        "peak_memory_mb_sequential": max(peaks["sequential"]),
        "peak_memory_mb_batched": max(peaks["batched"]),
        "max_abs_difference_train_loss": float(np.nanmax(np.abs(losses[0] - losses[1]))),
        "load_average": load_average(),
    }


def _device_description(device: str) -> dict:
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(
                f"--device {device}: torch sees no CUDA device here; on a CPU run "
                "`python -m benchmarks.gpu --tiny --device cpu`"
            )
        props = torch.cuda.get_device_properties(device)
        return {"name": props.name, "memory_mb": props.total_memory / 2**20}
    return {"name": "cpu"}


def run(plan: Plan, device: str, out: Path, budget_seconds: float) -> dict:
    """Every section in turn; the JSON at ``out`` is rewritten after each."""
    results: dict = {
        "benchmark": "gpu",
        "device": device,
        "device_description": _device_description(device),
        "tiny": plan == TINY,
        "plan": asdict(plan),
        "machine": machine(),
        "peak_memory_source": PeakMemory(device).source,
        "load_average_start": load_average(),
    }
    budgets = dict(plan.budgets_seconds)
    sections: list[tuple[str, Callable[[float], dict]]] = [
        ("paper", lambda budget: paper(plan, device, budget))
    ]
    for k in plan.batched_ks:
        sections.append((f"batched_k{k}", lambda budget, k=k: batched(plan, k, device, budget)))
    started = time.perf_counter()
    for name, section in sections:
        left = budget_seconds - (time.perf_counter() - started)
        began = time.perf_counter()
        if left <= 0:
            result = {"skipped": f"no time left of --budget-seconds {budget_seconds:g}"}
        else:
            try:
                result = section(min(budgets.get(name, left), left))
            except Exception as exc:  # one broken section must not lose the others' figures
                result = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
        result["seconds"] = time.perf_counter() - began
        results[name] = result
        print(json.dumps({name: result}, indent=2), flush=True)
        out.write_text(json.dumps(results, indent=2))
    peaks = [
        value
        for name, _ in sections
        for key, value in results[name].items()
        if key.startswith("peak_memory_mb") and math.isfinite(value)
    ]
    results["peak_memory_mb"] = max(peaks) if peaks else None
    results["total_seconds"] = time.perf_counter() - started
    results["load_average_end"] = load_average()
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out} ({results['total_seconds']:.0f} s)")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument(
        "--tiny", action="store_true", help="seconds-long sizes (the CPU check of the suite)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="write the JSON here")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=420.0,
        help="time for all sections together (default 420; see the module docstring)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 with --device cpu, as every benchmark on the shared "
        "CPU machine; torch's default otherwise)",
    )
    args = parser.parse_args(argv)
    plan = TINY if args.tiny else FULL
    threads = args.threads or (1 if args.device == "cpu" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return run(plan, args.device, args.out, args.budget_seconds)


if __name__ == "__main__":
    main()
