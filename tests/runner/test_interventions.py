"""Interventions as spec fields: weight decay towards the initialisation, minibatches, losses,
noise, dropout; every one resumes exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cdsanalysis import open_runs
from runner.grid import parse_grid
from runner.spec import RunSpec
from runner.store import RunStore
from runner.trainer import Batches, build_run, classification_loss, decay_towards_init_, train_run

BASE = {
    "task": {"p": 11},
    "n_samples": 60,
    "steps": 1,
    "model": {"width": 32, "heads": 4, "n_positions": 8},
}


def _spec(**fields) -> RunSpec:
    return RunSpec.model_validate({**BASE, **fields})


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_decay_towards_init_pulls_towards_the_initial_weights(name):
    # With no loss gradient, one step moves w towards w0 (never towards zero): AdamW (decoupled)
    # and SGD shrink w - w0 by exactly (1 - lr * wd); Adam's L2 term is normalised by its second
    # moment, so its first step moves every weight by lr towards w0.
    spec = _spec(optimizer={"name": name, "lr": 0.1, "weight_decay": 0.5, "decay_towards": "init"})
    setup = build_run(spec, torch.device("cpu"))
    params = list(setup.model.parameters())
    assert setup.initial is not None
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p))
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    decay_towards_init_(setup)
    setup.optimizer.step()
    for p, b, w0 in zip(params, before, setup.initial, strict=True):
        if name == "adam":
            gradient = 0.5 * (b - w0)  # Adam's first step: lr * g / (|g| + eps)
            expected = (b - w0) - 0.1 * gradient / (gradient.abs() + 1e-8)
        else:
            expected = (1 - 0.1 * 0.5) * (b - w0)
        torch.testing.assert_close(p - w0, expected, rtol=1e-5, atol=1e-6)


def _exempt_by_hand(name: str) -> bool:
    """Norm layers and biases, by the GPT's and BERT's parameter names (written out here, not
    asked of the code under test)."""
    return name.endswith(".bias") or ".ln_" in name or "LayerNorm" in name


BERT = {"family": "bert", "width": 32, "heads": 4, "intermediate": 64, "n_positions": 8}


@pytest.mark.parametrize("family", ["gpt", "bert"])
@pytest.mark.parametrize("scope", ["all", "weights"])
def test_decay_scope_gives_norms_and_biases_weight_decay_zero(family, scope):
    model = BERT if family == "bert" else BASE["model"]
    spec = _spec(model=model, optimizer={"weight_decay": 0.3, "decay_scope": scope})
    setup = build_run(spec, torch.device("cpu"))
    decay_of = {
        id(p): group["weight_decay"] for group in setup.optimizer.param_groups
        for p in group["params"]
    }  # fmt: skip
    named = list(setup.model.named_parameters())
    assert len(decay_of) == len(named)  # every parameter in exactly one group
    n_exempt = 0
    for name, p in named:
        exempt = scope == "weights" and _exempt_by_hand(name)
        assert decay_of[id(p)] == (0.0 if exempt else 0.3), name
        n_exempt += exempt
    assert (n_exempt > 0) == (scope == "weights") and n_exempt < len(named)
    assert len(setup.optimizer.param_groups) == (1 if scope == "all" else 2)


@pytest.mark.parametrize("towards", ["zero", "init"])
@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_decay_scope_weights_leaves_layernorm_undecayed_over_three_steps(name, towards):
    # No loss gradient: three steps of pure decay. AdamW (decoupled) and SGD (L2 term) shrink a
    # decayed parameter (or, towards init, its distance to w0) by (1 - lr * wd) per step; a
    # LayerNorm gain or bias exempt by decay_scope stays exactly where it is.
    lr, wd, steps = 0.1, 0.5, 3
    factor = (1 - lr * wd) ** steps  # 0.857375
    runs = {}
    for scope in ("all", "weights"):
        spec = _spec(
            optimizer={
                "name": name,
                "lr": lr,
                "weight_decay": wd,
                "decay_towards": towards,
                "decay_scope": scope,
            }
        )
        setup = build_run(spec, torch.device("cpu"))
        named = dict(setup.model.named_parameters())
        w0 = {n: p.detach().clone() for n, p in named.items()}
        with torch.no_grad():  # away from w0, so that decay towards init has work to do
            for p in named.values():
                p.add_(1.0)
        start = {n: p.detach().clone() for n, p in named.items()}
        for _ in range(steps):
            for p in named.values():
                p.grad = torch.zeros_like(p)
            if setup.initial is not None:
                decay_towards_init_(setup)
            setup.optimizer.step()
        target = w0 if towards == "init" else {n: torch.zeros_like(p) for n, p in w0.items()}
        runs[scope] = (named, start, target)
    for scope, (named, start, target) in runs.items():
        for n, p in named.items():
            exempt = scope == "weights" and _exempt_by_hand(n)
            expected = start[n] if exempt else target[n] + factor * (start[n] - target[n])
            torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-6, msg=n)
    gain = "lm.transformer.h.0.ln_1.weight"
    assert not torch.equal(runs["all"][0][gain], runs["weights"][0][gain])


def test_decay_scope_in_a_real_run_and_its_store(tiny_grid, tmp_path):
    # One real AdamW step from one initialisation: the decayed parameters take the same update
    # under both scopes; an exempt one ends lr * wd * w0 above its decayed twin (decoupled
    # decay: w - lr * wd * w - lr * u against w - lr * u, the same Adam update u).
    text = (
        tiny_grid(steps=1, n_samples="[40]")
        .read_text()
        .replace(
            "optimizer: {lr: 1.0e-3, weight_decay: 1.0}",
            "optimizer: {lr: 1.0e-2, weight_decay: 2.0, decay_scope: [all, weights]}",
        )
    )
    grid = parse_grid(text)
    path = tmp_path / "s.zarr"
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    final = {}
    for i, run in enumerate(grid.runs):
        assert train_run(store, i, grid.settings) == "done"
        final[run.optimizer.decay_scope] = torch.load(store.checkpoint_path(i), weights_only=True)
    initial = dict(build_run(grid.runs[0], torch.device("cpu")).model.named_parameters())
    for n, w0 in initial.items():
        gap = final["weights"]["model"][n] - final["all"]["model"][n]
        expected = 1.0e-2 * 2.0 * w0.detach() if _exempt_by_hand(n) else torch.zeros_like(w0)
        torch.testing.assert_close(gap, expected, rtol=1e-4, atol=1e-8, msg=n)
    ds = open_runs(path)
    assert list(ds["decay_scope"].values) == ["all", "weights"]
    # the default scope, spelled out, is the run the grid without the field has (same id)
    without = parse_grid(text.replace(", decay_scope: [all, weights]", "")).runs[0]
    assert grid.runs[0].run_id == without.run_id != grid.runs[1].run_id


def test_decay_towards_zero_and_towards_init_differ_in_a_real_run(tiny_grid, tmp_path):
    text = (
        tiny_grid(steps=40, n_samples=40)
        .read_text()
        .replace(
            "optimizer: {lr: 1.0e-3, weight_decay: 1.0}",
            "optimizer: {lr: 1.0e-2, weight_decay: 5.0, decay_towards: [zero, init]}",
        )
    )
    grid = parse_grid(text)
    store = RunStore.create_or_open(tmp_path / "s.zarr", grid.runs, grid.settings, grid.text)
    for i in range(2):
        train_run(store, i, grid.settings)
    distance = {}
    for i, run in enumerate(grid.runs):
        setup = build_run(run, torch.device("cpu"))
        state = torch.load(store.checkpoint_path(i), weights_only=True)["model"]
        initial = dict(setup.model.named_parameters())
        distance[run.optimizer.decay_towards] = (
            torch.sqrt(sum(((state[n] - initial[n]) ** 2).sum() for n in initial)).item(),
            torch.sqrt(sum((state[n] ** 2).sum() for n in initial)).item(),
        )
    # Towards init stays closer to w0; towards zero ends with the smaller norm.
    assert distance["init"][0] < distance["zero"][0]
    assert distance["zero"][1] < distance["init"][1]


def test_minibatches_cover_each_sample_once_per_epoch_and_reshuffle():
    setup = build_run(_spec(batch_size=16), torch.device("cpu"))
    batches = Batches(setup)
    assert batches.per_epoch == 4  # 60 samples: 16 + 16 + 16 + 12
    epochs = []
    for epoch in range(2):
        ids = [batches(1 + epoch * 4 + k)[0]["input_ids"] for k in range(4)]
        rows = torch.cat(ids)
        assert len(rows) == 60
        # every training sample exactly once (inputs are distinct pairs)
        assert len({tuple(r.tolist()) for r in rows}) == 60
        epochs.append(rows)
    assert not torch.equal(epochs[0], epochs[1])
    # any step's batch is known without replaying earlier ones (exact resume)
    fresh = Batches(setup)
    assert torch.equal(fresh(7)[0]["input_ids"], batches(7)[0]["input_ids"])


def test_mse_and_cross_entropy_losses_on_hand_computed_values():
    # Logits chosen so the softmax is exact by hand: equal logits give (1/3, 1/3, 1/3), and
    # (ln 2, 0, 0) gives (2/4, 1/4, 1/4).
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    # Squared error to the one-hot target, summed over classes:
    #   row 0: (1/3 - 1)^2 + (1/3)^2 + (1/3)^2 = 4/9 + 1/9 + 1/9 = 2/3
    #   row 1: (1/2)^2 + (1/4)^2 + (1/4 - 1)^2 = 4/16 + 1/16 + 9/16 = 7/8
    mse = {"mean": (2 / 3 + 7 / 8) / 2, "sum": 2 / 3 + 7 / 8}
    # Cross-entropy -log p(label): row 0 -log(1/3) = log 3, row 1 -log(1/4) = log 4.
    ce = {"mean": math.log(12.0) / 2, "sum": math.log(12.0)}
    for reduction in ("mean", "sum"):
        got_mse = classification_loss("mse", logits, labels, reduction=reduction)
        got_ce = classification_loss("cross_entropy", logits, labels, reduction=reduction)
        assert got_mse.item() == pytest.approx(mse[reduction], rel=1e-12), reduction
        assert got_ce.item() == pytest.approx(ce[reduction], rel=1e-12), reduction


def _interrupt_after_first_flush(store, index, settings):
    """Train, but stop (as Ctrl-C would) right after the first flush; return steps done then."""

    def stop(_steps):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(store, index, settings, on_steps=stop)
    return store.state(index)[1]


def test_every_intervention_resumes_bitwise(tmp_path):
    # Minibatches, dropout, all three noises, decay towards init and the MSE loss at once: a
    # run stopped after its first flush and resumed equals one trained straight through.
    text = """
name: noisy
task: {p: 11}
n_samples: 60
seed: 3
model: {width: 32, depth: 1, heads: 4, n_positions: 8, dropout: 0.1}
optimizer: {name: adamw, lr: 1.0e-3, weight_decay: 1.0, decay_towards: init}
batch_size: 16
loss: mse
noise: {gradient: 1.0e-2, update: 1.0e-4, weight: 1.0e-3}
steps: 24
flush_every: 7
histogram: {every: 10, groups: [embedding], bins: 8}
"""
    grid = parse_grid(text)
    whole = RunStore.create_or_open(tmp_path / "a.zarr", grid.runs, grid.settings, grid.text)
    assert train_run(whole, 0, grid.settings) == "done"
    parts = RunStore.create_or_open(tmp_path / "b.zarr", grid.runs, grid.settings, grid.text)
    assert _interrupt_after_first_flush(parts, 0, grid.settings) == 7
    assert train_run(parts, 0, grid.settings) == "done"
    a, b = open_runs(tmp_path / "a.zarr"), open_runs(tmp_path / "b.zarr")
    for name in (
        "train_loss",
        "train_accuracy",
        "test_loss",
        "param_norm_total",
        "weight_histogram",
    ):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert np.isfinite(a.train_loss.values).all()


def test_noise_changes_the_run_and_weight_noise_does_not_stay_in_the_weights(tmp_path):
    def final_norms(noise: dict) -> np.ndarray:
        text = (
            "name: n\ntask: {p: 11}\nn_samples: 60\nsteps: 5\n"
            "model: {width: 32, heads: 4, n_positions: 8}\n"
            "optimizer: {name: sgd, lr: 1.0e-9, weight_decay: 0.0}\n"
            f"noise: {noise or '{}'}\n"
        ).replace("'", "")
        grid = parse_grid(text)
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.zarr"
        store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
        train_run(store, 0, grid.settings)
        return open_runs(path).param_norm_total.values[0]

    clean = final_norms({})
    # lr ~ 0: weight noise perturbs only the forward pass, so the norms stay put ...
    np.testing.assert_allclose(final_norms({"weight": 0.05}), clean, rtol=1e-6)
    # ... while update noise accumulates in the weights.
    assert abs(final_norms({"update": 0.05})[-1] - clean[-1]) > 1e-3
