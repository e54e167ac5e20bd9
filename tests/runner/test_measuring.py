"""Measurements taken on a worker thread equal those taken inline, bit for bit; minibatch runs
measure the whole training set on the test cadence."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import schemas
from cdsanalysis import open_runs
from cdsanalysis.regimes import classify_runs
from runner.grid import load_grid, parse_grid
from runner.measuring import StepMeasurer
from runner.models.gpt import AnswerGPT
from runner.spec import GPTModel
from runner.store import RunStore
from runner.trainer import RunInterrupted, build_run, train_run

#: Every per-step and histogram variable the runner writes.
METRICS = (*schemas.variables_with_role("metric"), *schemas.variables_with_role("histogram"))
#: Measured on minibatch runs only (NaN throughout for full-batch runs).
MINIBATCH_ONLY = ("train_set_loss", "train_set_accuracy")


def _train(tiny_grid, tmp_path, name, extra):
    grid_path = tiny_grid(name=f"{name}.yaml", steps=70, flush_every=16)
    grid_path.write_text(grid_path.read_text() + extra)
    grid = load_grid(grid_path)
    store = RunStore.create_or_open(tmp_path / f"{name}.zarr", grid.runs, grid.settings, grid.text)
    workers = set()  # measuring threads alive at each flush

    def on_steps(_):
        workers.update(t.name for t in threading.enumerate() if t.name == "cds-measure")

    statuses = [train_run(store, i, grid.settings, on_steps) for i in range(len(grid.runs))]
    assert statuses == ["done"] * 2
    assert bool(workers) == grid.settings.measure_in_background
    return open_runs(tmp_path / f"{name}.zarr")


@pytest.mark.parametrize(
    "extra",
    ["", "noise: {update: 1.0e-3, weight: 1.0e-3}\n", "batch_size: 16\ntrain_eval_subset: 30\n"],
)
def test_background_measurements_equal_inline_ones(tiny_grid, tmp_path, extra):
    background = _train(tiny_grid, tmp_path, "background", extra + "measure_in_background: true\n")
    inline = _train(tiny_grid, tmp_path, "inline", extra + "measure_in_background: false\n")
    for name in METRICS:
        measured = "batch_size" in extra or name not in MINIBATCH_ONLY
        assert np.isfinite(background[name].values).any() == measured, name
        np.testing.assert_array_equal(background[name].values, inline[name].values, err_msg=name)


def _model() -> AnswerGPT:
    torch.manual_seed(0)
    return AnswerGPT(GPTModel(width=16, heads=2), vocab_size=9)


def test_the_shadow_holds_the_weights_submitted_not_later_ones():
    model = _model()
    measurer = StepMeasurer(model, background=True)
    release = threading.Event()
    seen = {}

    def measure(step, row):
        release.wait(timeout=30)  # hold the worker while the live weights change
        seen[step] = [p.detach().clone() for p in measurer.target.parameters()]

    measurer.start(measure)
    before = [p.detach().clone() for p in model.parameters()]
    measurer.submit(1, 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "update 1", while step 1 is being measured
    release.set()
    measurer.drain()
    measurer.close()
    assert all(torch.equal(a, b) for a, b in zip(seen[1], before, strict=True))
    assert measurer.target.lm.lm_head.weight is measurer.target.lm.transformer.tokens_embed.weight


def test_a_failing_measurement_reaches_the_training_thread():
    measurer = StepMeasurer(_model(), background=True)

    def measure(step, row):
        if step == 2:
            raise RuntimeError("measurement of step 2 broke")

    measurer.start(measure)
    measurer.submit(1, 0)
    measurer.submit(2, 1)
    with pytest.raises(RuntimeError, match="step 2 broke"):
        measurer.drain()
    measurer.close()  # returns: the worker is stopped, nothing hangs
    assert not measurer._thread.is_alive()


#: A minibatch run on real IMDB rows that fits its 48 reviews in about 55 steps here (60 were
#: too few on a fresh CI machine: the step varies between machines), while single minibatches of
#: 8 are all right from step ~14 on; 150 steps leave room (seconds on a CPU).
IMDB_MINIBATCH = """\
name: imdb_minibatch
task: {{name: imdb, data: '{data}', max_length: 32, tokenizer: {{vocab_size: 600}}}}
n_samples: 48
model: {{family: mlp, width: 32, depth: 1, embedding: 16}}
optimizer: {{lr: 1.0e-2, weight_decay: 0.0}}
batch_size: 8
steps: 150
eval_every: 5
flush_every: 16
histogram: {{every: 50, groups: [embedding], bins: 4}}
"""


def test_a_minibatch_run_measures_memorisation_on_the_whole_training_set(
    imdb_dir, text_caches, tmp_path
):
    grid = parse_grid(IMDB_MINIBATCH.format(data=imdb_dir()))
    store = RunStore.create_or_open(tmp_path / "s.zarr", grid.runs, grid.settings, grid.text)
    stops = []

    def stop_after_19_updates() -> bool:  # asked once after every step
        stops.append(1)
        return len(stops) == 19

    with pytest.raises(RunInterrupted):
        train_run(store, 0, grid.settings, stop=stop_after_19_updates)
    # The weights after 19 updates: what step 20 (an evaluated step) measures on resuming.
    after_19 = torch.load(io.BytesIO(store.read_checkpoint(0)))["model"]
    assert train_run(store, 0, grid.settings) == "done"
    ds = open_runs(tmp_path / "s.zarr")
    whole_set = ds.train_set_accuracy.values[0]

    # Measured exactly at the test cadence (step 1, then every 5th), NaN elsewhere.
    evaluated = [1, *range(5, 151, 5)]
    assert (np.flatnonzero(np.isfinite(whole_set)) + 1).tolist() == evaluated
    assert (np.flatnonzero(np.isfinite(ds.train_set_loss.values[0])) + 1).tolist() == evaluated
    assert (
        (whole_set[np.isfinite(whole_set)] >= 0) & (whole_set[np.isfinite(whole_set)] <= 1)
    ).all()

    # Step 20 recomputed independently: the checkpointed weights on all 48 training rows.
    setup = build_run(grid.runs[0], torch.device("cpu"))
    assert len(setup.train_y) == 48
    setup.model.load_state_dict(after_19)
    setup.model.eval()
    with torch.no_grad():
        logits = setup.model(setup.train)[:, : setup.n_classes]
    right = (logits.argmax(dim=1) == setup.train_y).sum().item()
    assert whole_set[19] == pytest.approx(right / 48, abs=1e-6)
    loss = F.cross_entropy(logits, setup.train_y).item()
    assert ds.train_set_loss.values[0, 19] == pytest.approx(loss, rel=1e-4)

    # Memorisation is read off the whole training set: the first evaluated step at >= 0.99,
    # never earlier than the first minibatch that alone reached it.
    runs = classify_runs(ds)
    assert runs.memorisation_source.values.tolist() == ["train_set_accuracy"]
    first_minibatch = 1 + int(np.argmax(ds.train_accuracy.values[0] >= np.float32(0.99)))
    expected = next(s for s in evaluated if whole_set[s - 1] >= np.float32(0.99))
    assert runs.memorisation_step.values[0] == expected >= first_minibatch


# -- logit scale and softmax collapse, against hand computations ---------------------------------

#: Float32 keeps 24 significant bits: 1 + s rounds to exactly 1 when s <= 2**-24 (ties to even).
FLOAT32_LOST = 2.0**-24


def _by_hand(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean max logit, mean logit L2 norm and the collapsed fraction, in float64.

    A sample has collapsed when its label is the argmax and 1 + the other classes' exp(z_j -
    z_y) rounds to 1 in float32: surely so when their sum is well below 2**-24, surely not when
    one of them alone is well above it. Between the two the float32 summation order decides;
    the test refuses such samples (its data must avoid them)."""
    z = logits.double()
    terms = torch.exp(z - z.gather(1, labels[:, None]))
    terms = terms.scatter(1, labels[:, None], 0.0)  # the other classes only
    on_top = z.argmax(dim=1) == labels
    surely = terms.sum(dim=1) <= 0.7 * FLOAT32_LOST
    surely_not = terms.max(dim=1).values >= 1.3 * FLOAT32_LOST
    assert (surely | surely_not)[on_top].all(), "a sample sits on the float32 boundary"
    return {
        "max": z.max(dim=1).values.mean().item(),
        "norm": z.norm(dim=1).mean().item(),
        "collapsed": (on_top & surely).double().mean().item(),
    }


def test_softmax_collapse_is_the_float32_rounding_of_the_correct_class_to_one():
    from runner.measuring import collapse_fraction, softmax_collapsed

    logits = torch.tensor(
        [
            [0.0, -30.0, -30.0],  # others sum to 1.9e-13: lost next to 1 -> collapsed
            [0.0, -10.0, -10.0],  # 9.1e-5: not
            [-30.0, 0.0, -30.0],  # label 0 is not the argmax: probability ~0, not
            [0.0, -16.0, -16.0],  # 1.1e-7 each: one alone survives 1 + it: not
            [0.0, -17.5, -40.0],  # 2.5e-8 < 6.0e-8: collapsed
            [100.0, 80.0, 0.0],  # a shift changes nothing: exp(-20) = 2.1e-9 -> collapsed
        ]
    )
    labels = torch.zeros(6, dtype=torch.long)
    expected = [True, False, False, False, True, True]
    assert softmax_collapsed(logits, labels).tolist() == expected
    # float64 or float16 logits are judged in float32 all the same
    assert softmax_collapsed(logits.double(), labels).tolist() == expected
    assert collapse_fraction(logits, labels).item() == pytest.approx(3 / 6)
    # a stacked group: (runs, samples, classes) with labels shared by every run
    stacked = torch.stack([logits, logits.flip(0)])
    assert collapse_fraction(stacked, labels).tolist() == pytest.approx([0.5, 0.5])


def _tiny_mlp(scale: float) -> tuple[torch.nn.Module, dict[str, torch.Tensor], torch.Tensor]:
    from runner.model_specs import MLPModel
    from runner.models.mlp import MLPClassifier

    torch.manual_seed(3)
    model = MLPClassifier(MLPModel(width=8, depth=1, embedding=4), 7, 5, 3, "concat", None)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)  # logits large enough that some samples collapse
    model.eval()
    inputs = torch.randint(0, 7, (23, 3))
    return model, {"input_ids": inputs}, torch.randint(0, 5, (23,))


def _mlp_logits_by_hand(model, inputs: torch.Tensor) -> torch.Tensor:
    """The MLP's logits in plain float64 torch from its weights: concat embeddings, ReLU layer,
    linear head."""
    w = {k: v.detach().double() for k, v in model.state_dict().items()}
    pooled = w["embedding.weight"][inputs].flatten(1)
    hidden = torch.relu(pooled @ w["hidden.0.weight"].T + w["hidden.0.bias"])
    return hidden @ w["classifier.weight"].T + w["classifier.bias"]


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_split_metrics_equal_a_hand_computation_on_a_tiny_model(scale):
    from runner.measuring import test_metrics

    model, features, labels = _tiny_mlp(scale)
    z = _mlp_logits_by_hand(model, features["input_ids"])
    hand = _by_hand(z, labels)
    if scale > 1:  # the check must see both kinds of samples
        assert 0 < hand["collapsed"] < 1
    # slices of 4 samples (23 = 5 * 4 + 3): the sums must cross slices
    got = test_metrics(model, features, labels, "cross_entropy", 5, batch_size=4)
    assert got.logit_max_mean.item() == pytest.approx(hand["max"], rel=1e-5)
    assert got.logit_norm_mean.item() == pytest.approx(hand["norm"], rel=1e-5)
    assert got.collapse_fraction.item() == pytest.approx(hand["collapsed"], abs=1e-7)
    assert got.loss.item() == pytest.approx(F.cross_entropy(z, labels).item(), rel=1e-4, abs=1e-6)
    right = (z.argmax(dim=1) == labels).double().mean().item()
    assert got.accuracy.item() == pytest.approx(right, abs=1e-7)

    # a stacked group of two runs (this model and one with half its head): per run, the same
    other, _, _ = _tiny_mlp(scale / 2)
    stacked = test_metrics(
        lambda f: torch.stack([model(f), other(f)]),
        features,
        labels,
        "cross_entropy",
        5,
        batch_size=4,
        runs=2,
    )
    second = _by_hand(_mlp_logits_by_hand(other, features["input_ids"]), labels)
    for field, key in (
        ("logit_max_mean", "max"),
        ("logit_norm_mean", "norm"),
        ("collapse_fraction", "collapsed"),
    ):
        values = getattr(stacked, field).tolist()
        assert values == pytest.approx([hand[key], second[key]], rel=1e-5, abs=1e-7), field


#: A full-batch (or, with ``batch_size``, minibatch) modular-addition run whose initial logits
#: are large (alpha = 20): one of its 60 training samples starts collapsed.
SCALED_GRID = """\
name: scaled
task: {{p: 11}}
n_samples: 60
seed: 0
alpha: 20
model: {model}
optimizer: {{lr: 1.0e-3, weight_decay: 1.0}}
steps: 6
eval_every: 5
flush_every: 16
histogram: {{every: 100, groups: [embedding], bins: 4}}
{extra}"""
GPT = "{width: 32, depth: 1, heads: 4, n_positions: 8}"
MLP = "{family: mlp, width: 16, depth: 1, embedding: 8}"


@pytest.mark.parametrize(
    ("model", "extra"),
    [(GPT, ""), (GPT, "batch_size: 16\n"), (MLP, "")],
    ids=["gpt-full-batch", "gpt-minibatch", "mlp-full-batch"],
)
def test_a_run_records_logit_scale_and_collapse_as_computed_by_hand(tmp_path, model, extra):
    grid = parse_grid(SCALED_GRID.format(model=model, extra=extra))
    store = RunStore.create_or_open(tmp_path / "s.zarr", grid.runs, grid.settings, grid.text)
    assert train_run(store, 0, grid.settings) == "done"
    ds = open_runs(tmp_path / "s.zarr")
    evaluated = [1, 5]
    for name in ("test_logit_max_mean", "test_logit_norm_mean", "train_softmax_collapse_fraction"):
        assert (np.flatnonzero(np.isfinite(ds[name].values[0])) + 1).tolist() == evaluated, name
        assert "absent" not in ds[name].attrs

    # Step 1 measures the initial weights: rebuild them (same seed) and compute by hand.
    setup = build_run(grid.runs[0], torch.device("cpu"))
    with torch.no_grad():
        if model == GPT:  # the plain HF forward over every position, answer position after
            test_z = setup.model.reference_logits(setup.test["input_ids"])
            train_z = setup.model.reference_logits(setup.train["input_ids"])
        else:
            test_z = _mlp_logits_by_hand(setup.model, setup.test["input_ids"])
            train_z = _mlp_logits_by_hand(setup.model, setup.train["input_ids"])
    test_hand, train_hand = _by_hand(test_z, setup.test_y), _by_hand(train_z, setup.train_y)
    assert ds.test_logit_max_mean.values[0, 0] == pytest.approx(test_hand["max"], rel=1e-5)
    assert ds.test_logit_norm_mean.values[0, 0] == pytest.approx(test_hand["norm"], rel=1e-5)
    collapsed = ds.train_softmax_collapse_fraction.values[0, 0]
    assert collapsed == pytest.approx(train_hand["collapsed"], abs=1e-7)
    if model == GPT:
        assert collapsed == pytest.approx(1 / 60, abs=1e-7)  # not trivially 0
