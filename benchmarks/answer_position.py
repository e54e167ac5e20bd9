"""Training-step cost of the answer-position forward against the plain HF forward.

Both compute the same loss (the logits at the '=' position; tests/runner/test_gpt.py checks the
numbers agree); the plain one runs the last block and the LM head at every position, as the
authors' code does. Timed alternately in one process, so the ratio is robust to machine noise.

    python -m benchmarks.answer_position [--p 47] [--n-samples 900] [--repeats 30] [--json FILE]
        [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from runner.spec import RunSpec
from runner.trainer import build_run


def _step_seconds(setup, logits_fn) -> float:
    started = time.perf_counter()
    loss = F.cross_entropy(logits_fn(setup.train["input_ids"]), setup.train_y)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return time.perf_counter() - started  # no optimizer.step: both time the same weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=int, default=47)
    parser.add_argument("--n-samples", type=int, default=900)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = RunSpec.model_validate({"task": {"p": args.p}, "n_samples": args.n_samples, "steps": 1})
    setup = build_run(spec, torch.device("cpu"))
    fast, plain = [], []
    for _ in range(3):  # warm-up
        _step_seconds(setup, setup.model)
        _step_seconds(setup, setup.model.reference_logits)
    for _ in range(args.repeats):
        fast.append(_step_seconds(setup, setup.model))
        plain.append(_step_seconds(setup, setup.model.reference_logits))
    result = {
        "benchmark": "answer_position_forward_backward",
        "p": args.p,
        "n_samples": args.n_samples,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "answer_position_ms_median": 1e3 * statistics.median(fast),
        "plain_hf_ms_median": 1e3 * statistics.median(plain),
        "speedup_ratio": statistics.median(plain) / statistics.median(fast),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
