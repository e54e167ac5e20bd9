"""Goal 1: the runner's step with full dense logging against a bare training loop.

The runner side is ``train_run`` writing a real store: per-step train metrics (from the forward
pass it back-propagates), test loss and accuracy on the whole test split, per-group and total
parameter norms, weight histograms every 100 steps, block flushes with checkpoints. The bare side
is the same model on the same data with the same optimiser and nothing else. Test evaluation is
logging too, so it is measured at two cadences: every step (``eval_every = 1``, the quickstart
setting) and every 100 steps (train metrics and norms still every step).

    python -m benchmarks.logging_overhead [--quick]
"""

from __future__ import annotations

from benchmarks.common import alternate, load_average, median, quick_main
from benchmarks.runner_timing import bare_seconds, runner_seconds
from runner.spec import RunSpec, StoreSettings

#: The figures BENCHMARKS.md reports (their spread: ``python -m benchmarks --invocations N``).
HEADLINE = (
    "ratio_eval_every_1_vs_tabled_bare",
    "ratio_eval_every_100_vs_tabled_bare",
    "ratio_eval_every_1_inline_vs_tabled_bare",
    "ratio_eval_every_1",
)


def run(quick: bool = False) -> dict:
    steps, repeats = (250, 3) if quick else (600, 5)
    settings = StoreSettings(name="bench", flush_every=100)
    warm = settings.flush_every  # steps before the first flush: set-up and warm-up, not timed
    inline = settings.model_copy(update={"measure_in_background": False})
    specs = {
        every: RunSpec.model_validate(
            {"task": {"p": 47}, "n_samples": 900, "seed": 0, "steps": steps, "eval_every": every}
        )
        for every in (1, 100)
    }
    times = alternate(
        {
            "bare": lambda: bare_seconds(specs[1], skip_steps=warm),
            "bare_tabled": lambda: bare_seconds(specs[1], vocab_tables=True, skip_steps=warm),
            "runner_eval_every_1": lambda: runner_seconds(specs[1], settings, True),
            "runner_eval_every_100": lambda: runner_seconds(specs[100], settings, True),
            "runner_eval_every_1_inline": lambda: runner_seconds(specs[1], inline, True),
        },
        repeats,
    )
    bare = median(times["bare"])
    bare_tabled = median(times["bare_tabled"])
    return {
        "goal": 1,
        "what": "runner train_run (dense logging, real store) / bare loop, same model and data",
        "model": "AnswerGPT p=47 n=900 width 128 depth 1, full batch AdamW",
        "steps": steps,
        "timed_steps": steps - warm,
        "repeats": repeats,
        "flush_every": settings.flush_every,
        "bare_ms_per_step": 1e3 * bare / (steps - warm),
        "bare_tabled_ms_per_step": 1e3 * bare_tabled / (steps - warm),
        "runner_eval_every_1_ms_per_step": 1e3
        * median(times["runner_eval_every_1"])
        / (steps - warm),
        "ratio_eval_every_1": median(times["runner_eval_every_1"]) / bare,
        "ratio_eval_every_100": median(times["runner_eval_every_100"]) / bare,
        "ratio_eval_every_1_vs_tabled_bare": median(times["runner_eval_every_1"]) / bare_tabled,
        "ratio_eval_every_100_vs_tabled_bare": median(times["runner_eval_every_100"]) / bare_tabled,
        "ratio_eval_every_1_inline_vs_tabled_bare": median(times["runner_eval_every_1_inline"])
        / bare_tabled,
        "target": 1.10,
        "load_average": load_average(),
    }


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()
