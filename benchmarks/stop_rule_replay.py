"""Replay the early-stopping rule (``stop_when: decided``) on the runs of a finished full-length
store, and count its wrong decisions (issue 18).

    python -m benchmarks.stop_rule_replay STORE.zarr --rule '{window_steps: 100, ...}' \\
        [--flush-every 100] [--measure range --measure drift] [--memorised-from NAME] \
        [--json PATH]

The rule only reads what a run has measured so far, so stopping a run changes nothing before its
stop: replaying :func:`runner.deciding.decide` at every ``flush_every`` steps of a run that took
all its steps gives exactly the step and reason the runner would have stopped it at. Each run's
**outcome** is what the analysis reads off the full run with its default settings: generalised
when the median test accuracy of its last ``OUTCOME_FRACTION`` of steps is ``>= eps`` (the rule's
``eps``). A decision is **wrong** when it contradicts the outcome: ``insufficient_flat`` on a run
that ends generalised, or ``generalised`` on one that does not. Per ``flat_measure`` the table
gives the runs stopped for each reason, the wrong ones, and the steps the stops save (a stopped
run's remaining steps) as a share of the store's steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
import zarr

from runner.deciding import GENERALISED, INSUFFICIENT_FLAT, decide
from runner.spec import StopWhen

#: The analysis's default final accuracy: the median over the last 10 % of a run's steps
#: (``AnalysisSettings.aggregate = median_last``, ``last_steps_fraction = 0.1``).
OUTCOME_FRACTION = 0.1


def _curves(location: str, memorised_from: str) -> dict[str, Any]:
    group = zarr.open_group(location, mode="r")
    status = [str(s) for s in group["status"][...]] if "status" in group else []
    return {
        "n_samples": group["n_samples"][...],
        "steps_done": group["steps_done"][...],
        "status": status,
        "test": group["test_accuracy"][...],
        "train": group[memorised_from][...],
    }


def _outcome(test: np.ndarray, steps: int, eps: float) -> bool:
    last = test[steps - max(1, int(np.ceil(OUTCOME_FRACTION * steps))) : steps]
    return bool(np.nanmedian(last) >= np.float32(eps))


def replay_run(
    rule: StopWhen, test: np.ndarray, train: np.ndarray, steps: int, flush_every: int
) -> tuple[str, int]:
    """``(reason, step)`` the runner would have stopped this run at ('' and ``steps`` when
    undecided at its end; the last step is no decision point, as in the runner)."""
    for last in range(flush_every, steps, flush_every):
        reason = decide(rule, last, test, train)
        if reason:
            return reason, last
    return "", steps


def replay(
    location: str, rule: StopWhen, flush_every: int, memorised_from: str = "train_accuracy"
) -> dict[str, Any]:
    """The decisions of ``rule`` on every run that took all its planned steps."""
    curves = _curves(location, memorised_from)
    full = np.asarray(curves["steps_done"]) == curves["test"].shape[1]
    stops = {GENERALISED: 0, INSUFFICIENT_FLAT: 0}
    wrong: list[dict[str, Any]] = []
    steps_total = steps_saved = 0
    for i in np.flatnonzero(full):
        steps = int(curves["steps_done"][i])
        test, train = curves["test"][i], curves["train"][i]
        reason, step = replay_run(rule, test, train, steps, flush_every)
        steps_total += steps
        if not reason:
            continue
        stops[reason] += 1
        steps_saved += steps - step
        generalised = _outcome(test, steps, rule.eps)
        if generalised != (reason == GENERALISED):
            wrong.append(
                {"n_samples": int(curves["n_samples"][i]), "reason": reason, "step": step,
                 "outcome": "generalised" if generalised else "not generalised"}
            )  # fmt: skip
    return {
        "flat_measure": rule.flat_measure,
        "runs": int(full.sum()),
        "runs_not_full": int((~full).sum()),
        "stopped_generalised": stops[GENERALISED],
        "stopped_insufficient": stops[INSUFFICIENT_FLAT],
        "wrong": wrong,
        "steps": steps_total,
        "steps_saved": steps_saved,
        "steps_saved_fraction": steps_saved / steps_total if steps_total else None,
    }


def render(location: str, rule: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'flat_measure':<12} {'runs':>5} {'generalised':>11} {'insufficient':>12} "
        f"{'wrong':>5} {'steps saved':>18}"
    )
    lines = [f"{location}: rule {rule}", head, "-" * len(head)]
    for r in rows:
        saved = f"{r['steps_saved']:,} ({r['steps_saved_fraction']:.0%})"
        lines.append(
            f"{r['flat_measure']:<12} {r['runs']:>5} {r['stopped_generalised']:>11} "
            f"{r['stopped_insufficient']:>12} {len(r['wrong']):>5} {saved:>18}"
        )
        lines.extend(
            f"  wrong: n = {w['n_samples']} {w['reason']} at step {w['step']}, ends {w['outcome']}"
            for w in r["wrong"]
        )
    if rows and rows[0]["runs_not_full"]:
        lines.append(f"warning: {rows[0]['runs_not_full']} run(s) did not take all their steps "
                     "and are not replayed")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stop_rule_replay", description=__doc__.splitlines()[0]
    )
    parser.add_argument("store", help="a store whose runs took all their steps")
    parser.add_argument("--rule", default="{}", help="stop_when fields as YAML (a mapping)")
    parser.add_argument("--flush-every", type=int, default=100, help="decision cadence (steps)")
    parser.add_argument(
        "--measure", action="append", choices=["range", "drift"], default=None,
        help="flat_measure(s) to replay (repeatable; default both)",
    )  # fmt: skip
    parser.add_argument(
        "--memorised-from", default="train_accuracy",
        choices=["train_accuracy", "train_set_accuracy"],
        help="the memorisation curve: train_set_accuracy for minibatch runs (runner.deciding)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    fields = yaml.safe_load(args.rule) or {}
    if not isinstance(fields, dict):
        parser.exit(2, f"error: --rule {args.rule!r}: give a YAML mapping of stop_when fields\n")
    rows = [
        replay(
            args.store,
            StopWhen(**{**fields, "flat_measure": m}),
            args.flush_every,
            args.memorised_from,
        )
        for m in (args.measure or ["range", "drift"])
    ]
    print(render(args.store, fields, rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
