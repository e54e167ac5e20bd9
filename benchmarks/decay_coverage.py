"""Coverage of the pooled decay rate on planted norm curves.

    python -m benchmarks.decay_coverage [--replicates 200] [--runs 3,5,8] [--json PATH]

A planted run's norm rises from memorisation to a peak ``peak_delay_steps`` later (linearly, by
``rise_fraction`` of the peak norm; the norm still grows while the training loss is not yet ~0),
then decays as ``w0 exp(-gamma_i (t - peak))`` until its generalisation step, and carries
multiplicative AR(1) noise in log space (lag-1 correlation ``noise_ar``, standard deviation
``noise_sd``), the strong autocorrelation of a training curve. The runs of a replicate either
share one true rate (``rate_sd_fraction = 0``) or draw ``gamma_i = gamma (1 + rate_sd_fraction
z_i)`` with ``z_i`` standard normal, so their *mean* rate is ``gamma``: the target of the pooled
interval is the mean rate ``gamma`` in both cases. Each run's memorisation and generalisation
steps vary a little (``step_jitter``), so runs' windows differ as in a grid.

Per replicate each run is fitted by :func:`cdsanalysis.decay.fit_run` (the real window rule:
opened at the norm's peak after memorisation, HAC standard errors) and the finished runs are
pooled by :func:`cdsanalysis.decay.pool_rates`. Reported per scenario and runs per replicate:
coverage of the nominal 90 % interval on the mean rate, HKSJ (the default) with a Wilson 95 %
interval of the coverage, and DerSimonian-Laird beside it; the coverage of each run's own
interval; the old pooled interval (percentile bootstrap over runs of the mean of point
estimates), on the new window and on the old one (opened at memorisation, the full old
method); relative bias of the pooled mean; the old window rule's relative bias.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cdsanalysis.decay import DecaySettings, fit_run, pool_rates

DEFAULT_RUNS = (3, 5, 8)
DEFAULT_REPLICATES = 200
CONFIDENCE = 0.9
#: Resamples of the old bootstrap-over-runs interval shown for comparison.
N_RESAMPLES = 1000


@dataclass(frozen=True)
class DecayScenario:
    """One planted decay (see the module docstring); steps are 1-based store steps."""

    name: str
    gamma: float = 1.0e-3  # per step: lr * wd = 1e-3 * 1.0 of the quickstart
    rate_sd_fraction: float = 0.0
    w0: float = 30.0
    mem_step: int = 40
    peak_delay_steps: int = 12
    rise_fraction: float = 0.01
    window_steps: int = 150  # peak to generalisation
    step_jitter: int = 10
    noise_sd: float = 0.002
    noise_ar: float = 0.9
    tail_steps: int = 50  # steps written after generalisation


SCENARIOS = (
    DecayScenario("one shared rate, short window (150 steps)"),
    DecayScenario("one shared rate, long window (500 steps)", window_steps=500),
    DecayScenario("rates drawn around the mean (sd 3 %), short window", rate_sd_fraction=0.03),
)


def planted_run(
    scenario: DecayScenario, rng: np.random.Generator, gamma: float | None = None
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """One run: ``(steps, norm, mem_step, gen_step, peak_step)`` with rate ``gamma``
    (default: the scenario's)."""
    s = scenario
    gamma = s.gamma if gamma is None else gamma
    mem = s.mem_step + int(rng.integers(-s.step_jitter, s.step_jitter + 1))
    peak = mem + s.peak_delay_steps
    gen = peak + s.window_steps + int(rng.integers(-s.step_jitter, s.step_jitter + 1))
    steps = np.arange(1, gen + s.tail_steps + 1, dtype=np.float64)
    low = s.w0 * (1.0 - s.rise_fraction)
    rise = low + (s.w0 - low) * np.clip((steps - mem) / s.peak_delay_steps, 0.0, 1.0)
    norm = np.where(steps <= peak, rise, s.w0 * np.exp(-gamma * (steps - peak)))
    noise = np.empty(steps.size)
    innovations = rng.normal(0.0, s.noise_sd * np.sqrt(1.0 - s.noise_ar**2), steps.size)
    noise[0] = rng.normal(0.0, s.noise_sd)
    for i in range(1, steps.size):
        noise[i] = s.noise_ar * noise[i - 1] + innovations[i]
    return steps, norm * np.exp(noise), float(mem), float(gen), float(peak)


def replicate(
    scenario: DecayScenario,
    n_runs: int,
    rng: np.random.Generator,
    decay: DecaySettings,
) -> dict[str, np.ndarray]:
    """Fit ``n_runs`` planted runs with ``decay``: per-run ``gamma``, ``gamma_se``,
    ``gamma_low``, ``gamma_high``, ``start`` and the planted ``peak``."""
    rates = scenario.gamma * (1.0 + scenario.rate_sd_fraction * rng.normal(size=n_runs))
    fits = {k: np.full(n_runs, np.nan) for k in ("gamma", "gamma_se", "low", "high", "start")}
    fits["peak"] = np.full(n_runs, np.nan)
    for i, rate in enumerate(rates):
        steps, norm, mem, gen, peak = planted_run(scenario, rng, rate)
        fit = fit_run(steps, norm, mem, gen, decay, CONFIDENCE)
        fits["gamma"][i], fits["gamma_se"][i] = fit["gamma"], fit["gamma_se"]
        fits["low"][i], fits["high"][i] = fit["gamma_low"], fit["gamma_high"]
        fits["start"][i], fits["peak"][i] = fit["start"], peak
    return fits


def coverage(
    scenario: DecayScenario, n_runs: int, replicates: int, seed: int = 0
) -> dict[str, float]:
    """The figures of one table row (see the module docstring)."""
    rng = np.random.default_rng(seed)
    peak_rule = DecaySettings()
    old_rule = DecaySettings(auto_start="memorisation")
    truth = scenario.gamma
    hits = {"hksj": 0, "dl": 0, "bootstrap": 0, "old": 0}
    run_hits = run_total = 0
    means, old_means = [], []
    for _ in range(replicates):
        state = rng.bit_generator.state
        fits = replicate(scenario, n_runs, rng, peak_rule)
        for method in ("hksj", "dl"):
            pool = pool_rates(fits["gamma"], fits["gamma_se"], CONFIDENCE, method)  # type: ignore[arg-type]
            hits[method] += pool["low"] <= truth <= pool["high"]
            if method == "hksj":
                means.append(pool["mean"])
        hits["bootstrap"] += _bootstrap_covers(fits["gamma"], truth, rng)
        run_hits += int(((fits["low"] <= truth) & (truth <= fits["high"])).sum())
        run_total += n_runs
        # the same planted runs, opened at memorisation
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        old = replicate(scenario, n_runs, replay, old_rule)
        old_means.append(float(np.mean(old["gamma"])))
        hits["old"] += _bootstrap_covers(old["gamma"], truth, rng)
    means_arr = np.asarray(means) / truth - 1.0
    old_arr = np.asarray(old_means) / truth - 1.0
    cover = hits["hksj"] / replicates
    w_low, w_high = wilson(hits["hksj"], replicates)
    return {
        "runs": n_runs,
        "replicates": replicates,
        "hksj_coverage": cover,
        "hksj_wilson_low": w_low,
        "hksj_wilson_high": w_high,
        "dl_coverage": hits["dl"] / replicates,
        "per_run_coverage": run_hits / run_total,
        "bootstrap_coverage": hits["bootstrap"] / replicates,
        "old_coverage": hits["old"] / replicates,
        "relative_bias": float(means_arr.mean()),
        "relative_bias_se": float(means_arr.std(ddof=1) / np.sqrt(replicates)),
        "old_window_relative_bias": float(old_arr.mean()),
        "old_window_relative_bias_se": float(old_arr.std(ddof=1) / np.sqrt(replicates)),
    }


def _bootstrap_covers(gamma: np.ndarray, truth: float, rng: np.random.Generator) -> bool:
    """The old pooled interval: percentile bootstrap over runs of the mean point estimate."""
    boot = rng.choice(gamma, size=(N_RESAMPLES, gamma.size)).mean(axis=1)
    low, high = np.quantile(boot, [0.5 - CONFIDENCE / 2, 0.5 + CONFIDENCE / 2])
    return bool(low <= truth <= high)


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a proportion."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
    return float(centre - half), float(centre + half)


def table(rows: list[dict]) -> str:
    head = (
        "| scenario | runs | replicates | HKSJ coverage [Wilson 95 %] | DL coverage | "
        "per-run interval coverage | bootstrap over runs | old (memorisation window + bootstrap) "
        "coverage | relative bias ± se | old window (memorisation) relative bias ± se |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [
        f"| {r['scenario']} | {r['runs']} | {r['replicates']} | {r['hksj_coverage']:.3f} "
        f"[{r['hksj_wilson_low']:.3f}, {r['hksj_wilson_high']:.3f}] | {r['dl_coverage']:.3f} | "
        f"{r['per_run_coverage']:.3f} | {r['bootstrap_coverage']:.3f} | {r['old_coverage']:.3f} | "
        f"{r['relative_bias']:+.4f} ± {r['relative_bias_se']:.4f} | "
        f"{r['old_window_relative_bias']:+.4f} ± {r['old_window_relative_bias_se']:.4f} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decay_coverage", description=__doc__
    )
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    parser.add_argument("--runs", default=",".join(map(str, DEFAULT_RUNS)))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for k, scenario in enumerate(SCENARIOS):
        for n_runs in (int(r) for r in args.runs.split(",")):
            row = coverage(scenario, n_runs, args.replicates, seed=1000 * k + n_runs)
            rows.append({"scenario": scenario.name, **row, "planted": asdict(scenario)})
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
