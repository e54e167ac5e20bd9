"""Goal 2: the runner against a reference loop that behaves like the authors' modular trainer.

The reference (here, not in the package) does what their code does every step: the HF
``OpenAIGPTLMHeadModel`` over all 7 tokens with the labels masked to the answer (HF's own shifted
loss), the test forward without ``torch.no_grad()``, accuracies as argmax over the whole
vocabulary, the global L2 norm as ``sum(p.norm().item() ** 2)`` (one host sync per parameter) and
``.item()`` on every logged number, as a logging script does. Both sides start from the same
initial weights (the runner's own initialisation for the spec) and must log the same step-1
losses to 1e-5.

    python -m benchmarks.authors_reference [--quick]
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import alternate, load_average, median, quick_main, synchronize
from benchmarks.runner_timing import runner_seconds
from runner.spec import RunSpec, StoreSettings
from runner.store import RunStore
from runner.trainer import build_run, train_run

#: The figures BENCHMARKS.md reports (their spread: ``python -m benchmarks --invocations N``).
HEADLINE = ("speedup_ratio", "runner_ms_per_step", "reference_ms_per_step")


def _authors_inputs(ids: torch.Tensor, answers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 7-token sequences 'a + b % p = c' and labels ignored (-100) except at the answer."""
    tokens = torch.cat([ids, answers[:, None]], dim=1)
    labels = torch.full_like(tokens, -100)
    labels[:, -1] = answers
    return tokens, labels


def reference_loop(
    spec: RunSpec, steps: int, device: str = "cpu", skip_steps: int = 0
) -> tuple[float, list[dict[str, float]]]:
    """The authors' way: returns (seconds of the loop, the logged values of each step).

    ``device``: where the model and data live (their code moves both to the GPU). The first
    ``skip_steps`` steps are run but not timed (warm-up: the seconds cover steps
    ``skip_steps + 1 .. steps``).
    """
    setup = build_run(spec, torch.device(device))
    lm = copy.deepcopy(setup.model.lm)  # the same initial weights as the runner's
    opt = spec.optimizer
    optimizer = torch.optim.AdamW(
        lm.parameters(), lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay
    )
    train_x, train_l = _authors_inputs(setup.train["input_ids"], setup.train_y)
    test_x, test_l = _authors_inputs(setup.test["input_ids"], setup.test_y)
    logs = []
    lm.train()
    started = time.perf_counter()
    for step in range(1, steps + 1):
        if step == skip_steps + 1:
            synchronize(device)
            started = time.perf_counter()
        out = lm(input_ids=train_x, labels=train_l)
        train_acc = (out.logits[:, -2].argmax(-1) == setup.train_y).float().mean()
        test_out = lm(input_ids=test_x, labels=test_l)  # no torch.no_grad(), as theirs
        test_acc = (test_out.logits[:, -2].argmax(-1) == setup.test_y).float().mean()
        norm = math.sqrt(sum(p.norm().item() ** 2 for p in lm.parameters()))
        logs.append(
            {
                "step": step,
                "train_loss": out.loss.item(),
                "test_loss": test_out.loss.item(),
                "train_accuracy": train_acc.item(),
                "test_accuracy": test_acc.item(),
                "param_norm_total": norm,
            }
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    synchronize(device)  # the last update is queued on a GPU
    return time.perf_counter() - started, logs


def runner_first_steps(spec: RunSpec, settings: StoreSettings) -> dict[str, np.ndarray]:
    """The runner's stored metrics of a short run (for the equality check)."""
    tmp = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    try:
        store = RunStore.create_or_open(tmp / "runs.zarr", [spec], settings, "benchmark")
        train_run(store, 0, settings)
        names = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm_total")
        return {name: store.array(name)[0, :] for name in names}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def paper_spec(steps: int, p: int = 113, n_samples: int = 2000) -> RunSpec:
    """p = 113, n = 2000, the authors' 1-layer GPT (d = 128), full batch, their optimiser, test
    set evaluated every step, accuracy over the whole vocabulary as they take it. (``p`` and
    ``n_samples`` are smaller only in the GPU benchmark's ``--tiny`` CPU check.)"""
    return RunSpec.model_validate(
        {
            "task": {"p": p, "accuracy_over": "vocabulary"},
            "n_samples": n_samples,
            "seed": 0,
            "steps": steps,
            "eval_every": 1,
        }
    )


def run(quick: bool = False) -> dict:
    steps, repeats = (20, 3) if quick else (50, 5)
    settings = StoreSettings(name="bench", flush_every=100)
    spec = paper_spec(steps)
    # Same metrics: the runner's stored step-1 (and step-2) values against the reference's.
    check_steps = 2
    ours = runner_first_steps(paper_spec(check_steps), settings)
    _, theirs = reference_loop(paper_spec(check_steps), check_steps)
    differences = {
        name: max(abs(float(ours[name][k]) - theirs[k][name]) for k in range(check_steps))
        for name in ours
    }
    times = alternate(
        {
            "reference": lambda: reference_loop(spec, steps)[0],
            "runner": lambda: runner_seconds(spec, settings),
        },
        repeats,
    )
    reference, runner = median(times["reference"]), median(times["runner"])
    return {
        "goal": 2,
        "what": "steps/s of runner train_run (every metric every step, real store) over a loop "
        "behaving like the authors' trainer",
        "model": "p=113 n=2000 test=3193, 1-layer GPT d=128, full batch AdamW(0.9, 0.98)",
        "steps": steps,
        "repeats": repeats,
        "reference_ms_per_step": 1e3 * reference / steps,
        "runner_ms_per_step": 1e3 * runner / steps,
        "speedup_ratio": reference / runner,
        "target": 3.0,
        "max_abs_difference_first_steps": differences,
        "same_metrics_to_1e-5": bool(
            max(differences["train_loss"], differences["test_loss"]) <= 1e-5
        ),
        "load_average": load_average(),
    }


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()
