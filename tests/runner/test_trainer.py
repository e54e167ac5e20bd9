"""The training loop on real (tiny) runs, written into real stores on disk."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch

import schemas
from cdsanalysis import open_runs, validate_store
from runner.grid import load_grid
from runner.store import RunStore
from runner.trainer import RunInterrupted, build_run, rescale_, train_run

#: Every per-step and histogram variable the runner writes.
METRICS = (*schemas.variables_with_role("metric"), *schemas.variables_with_role("histogram"))


def _train(grid_path, out):
    grid = load_grid(grid_path)
    store = RunStore.create_or_open(out, grid.runs, grid.settings, grid.text)
    return [train_run(store, i, grid.settings) for i in range(len(grid.runs))]


def test_a_run_writes_dense_metrics_by_the_schema(tiny_grid, tmp_path):
    grid_path = tiny_grid(eval_every=5, steps=50)
    assert _train(grid_path, tmp_path / "s.zarr") == ["done", "done"]
    validate_store(tmp_path / "s.zarr", deep=True)
    ds = open_runs(tmp_path / "s.zarr")
    assert list(ds.status.values) == ["done", "done"]
    assert np.isfinite(ds.train_loss.values).all()
    evaluated = np.isfinite(ds.test_accuracy.values[0])
    assert np.flatnonzero(evaluated).tolist() == [0, 4, 9, 14, 19, 24, 29, 34, 39, 44, 49]
    # Norms: groups present are finite and combine to the total; the tied head (and the
    # recurrent group, which a decoder lacks) is NaN.
    norms = ds.param_norm.sel(run=ds.run[0]).values
    absent = [list(ds.group.values).index(g) for g in ("head", "recurrent")]
    assert np.isnan(norms[:, absent]).all()
    present = np.delete(norms, absent, axis=1)
    assert np.isfinite(present).all()
    np.testing.assert_allclose(
        np.sqrt((present**2).sum(axis=1)), ds.param_norm_total.values[0], rtol=1e-5
    )
    # Histograms at steps 1, 20, 40 count every weight of the group (inside or outside).
    assert ds.hist_step.values.tolist() == [1, 20, 40]
    spec = load_grid(grid_path).runs[0]
    setup = build_run(spec, torch.device("cpu"))
    n_embedding = sum(p.numel() for n, p in setup.model.named_parameters() if "embed" in n)
    counts = ds.weight_histogram.sel(hist_group="embedding").values[0]
    outside = ds.weight_histogram_outside.sel(hist_group="embedding").values[0]
    np.testing.assert_array_equal(counts.sum(axis=1) + outside, n_embedding)


def test_initial_step_measures_the_initial_weights(tiny_grid, tmp_path):
    grid_path = tiny_grid(steps=3, n_samples=40)
    _train(grid_path, tmp_path / "s.zarr")
    ds = open_runs(tmp_path / "s.zarr")
    spec = load_grid(grid_path).runs[0]
    setup = build_run(spec, torch.device("cpu"))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(setup.model(setup.train), setup.train_y)
        norm = torch.sqrt(sum((p**2).sum() for p in setup.model.parameters()))
    assert ds.train_loss.values[0, 0] == pytest.approx(loss.item(), rel=1e-6)
    assert ds.param_norm_total.values[0, 0] == pytest.approx(norm.item(), rel=1e-5)


def test_same_spec_same_numbers(tiny_grid, tmp_path):
    grid_path = tiny_grid(steps=40)
    _train(grid_path, tmp_path / "a.zarr")
    _train(grid_path, tmp_path / "b.zarr")
    a, b = open_runs(tmp_path / "a.zarr"), open_runs(tmp_path / "b.zarr")
    for name in METRICS:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_alpha_multiplies_every_parameter():
    grid_path_free = {"p": 11}
    del grid_path_free
    from runner.spec import RunSpec

    spec = RunSpec.model_validate({"task": {"p": 11}, "n_samples": 40, "steps": 1})
    reference = build_run(spec, torch.device("cpu")).model
    scaled = build_run(spec.model_copy(update={"alpha": 7.5}), torch.device("cpu")).model
    for (name, p), q in zip(reference.named_parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(q, 7.5 * p, msg=name)
    rescale_(reference, 1.0)  # alpha = 1 means no change at all
    assert all(
        torch.equal(p, q)
        for p, q in zip(
            reference.parameters(),
            build_run(spec, torch.device("cpu")).model.parameters(),
            strict=True,
        )
    )


def test_diverging_run_is_marked_with_its_step_and_the_grid_goes_on(tiny_grid, tmp_path):
    # lr 1e30 overflows the weights in the first update: the loss at step 2 is not finite.
    path = tmp_path / "g.yaml"
    path.write_text(
        tiny_grid(flush_every=50)  # histograms at steps 20 and 40 are taken before the flush
        .read_text()
        .replace(
            "optimizer: {lr: 1.0e-3, weight_decay: 1.0}",
            "optimizer: {lr: [1.0e+30, 1.0e-3], weight_decay: 1.0}",
        )
        .replace("n_samples: [40, 80]", "n_samples: 40")
    )
    statuses = _train(path, tmp_path / "s.zarr")
    assert statuses == ["diverged", "done"]
    ds = open_runs(tmp_path / "s.zarr")
    diverged_at = int(ds.steps_done.values[0])
    assert 1 < diverged_at < 60
    assert not np.isfinite(ds.train_loss.values[0, diverged_at - 1])
    assert np.isnan(ds.train_loss.values[0, diverged_at:]).all()  # nothing after it
    histograms = ds.weight_histogram.values[0]  # hist_step 1, 20, 40
    assert np.isfinite(histograms[0]).all() and np.isnan(histograms[1:]).all()
    validate_store(tmp_path / "s.zarr", deep=True)


def test_vocab_tables_setting_changes_rounding_only(tiny_grid, tmp_path):
    """The runner's tabled forward (default) against the plain one, over a whole real run."""
    stores = {}
    for tables in (True, False):
        grid_path = tiny_grid(name=f"{tables}.yaml", steps=60, n_samples="[80]")
        grid_path.write_text(grid_path.read_text() + f"vocab_tables: {str(tables).lower()}\n")
        _train(grid_path, tmp_path / f"{tables}.zarr")
        stores[tables] = open_runs(tmp_path / f"{tables}.zarr")
    tabled, plain = stores[True], stores[False]
    assert not np.array_equal(tabled.train_loss.values, plain.train_loss.values)
    for name in ("train_loss", "test_loss", "param_norm_total", "param_norm"):
        np.testing.assert_allclose(tabled[name].values, plain[name].values, rtol=1e-4, err_msg=name)
    for name in ("train_accuracy", "test_accuracy"):
        np.testing.assert_array_equal(tabled[name].values, plain[name].values, err_msg=name)


def _stopped_after_16_steps(tiny_grid, tmp_path, name):
    grid = load_grid(tiny_grid(name=f"{name}.yaml", steps=40, n_samples="[40]"))
    store = RunStore.create_or_open(tmp_path / f"{name}.zarr", grid.runs, grid.settings, grid.text)
    calls = iter(range(1000))
    with pytest.raises(RunInterrupted):
        train_run(store, 0, grid.settings, stop=lambda: next(calls) == 15)
    return store, grid


def _rewrite_checkpoint(store, index, change):
    state = torch.load(io.BytesIO(store.read_checkpoint(index)))
    change(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    store.write_checkpoint(index, buffer.getvalue())


def test_a_checkpoint_from_before_its_format_field_resumes_exactly(tiny_grid, tmp_path):
    store, grid = _stopped_after_16_steps(tiny_grid, tmp_path, "resumed")
    _rewrite_checkpoint(store, 0, lambda state: state.pop("format"))  # as older runners wrote
    assert train_run(store, 0, grid.settings) == "done"
    _train(tiny_grid(name="clean.yaml", steps=40, n_samples="[40]"), tmp_path / "clean.zarr")
    resumed, clean = open_runs(tmp_path / "resumed.zarr"), open_runs(tmp_path / "clean.zarr")
    for name in METRICS:
        np.testing.assert_array_equal(resumed[name].values, clean[name].values, err_msg=name)


def test_a_checkpoint_of_another_format_is_refused_by_name(tiny_grid, tmp_path):
    store, grid = _stopped_after_16_steps(tiny_grid, tmp_path, "future")
    _rewrite_checkpoint(store, 0, lambda state: state.update(format=2))
    with pytest.raises(ValueError, match="checkpoint format 2 is not the one this runner reads"):
        train_run(store, 0, grid.settings)


def test_a_run_whose_lease_is_taken_over_stops_and_writes_nothing_more(tiny_grid, tmp_path):
    grid = load_grid(tiny_grid(steps=40, n_samples="[40]"))
    store = RunStore.create_or_open(tmp_path / "s.zarr", grid.runs, grid.settings, grid.text)
    # Taken over before the first step: not even its "running" state is written.
    assert train_run(store, 0, grid.settings, still_mine=lambda i: False) == "held"
    assert store.state(0) == ("pending", 0) and store.read_checkpoint(0) is None
    # Ours until the first flush (step 16) has landed, then another holder's.
    mine = lambda i: store.state(i)[1] < 16  # noqa: E731
    assert train_run(store, 0, grid.settings, still_mine=mine) == "held"
    assert store.state(0) == ("running", 16)
    assert torch.load(io.BytesIO(store.read_checkpoint(0)))["steps_done"] == 16
    loss = store.array("train_loss")[0]
    assert np.isfinite(loss[:16]).all() and np.isnan(loss[16:]).all()


TEXT_GRID = """\
name: imbalanced
task: {{name: text_classification, data: '{data}', max_length: 8, tokenizer: {{vocab_size: 200}}}}
n_samples: 20
model: {{family: mlp, width: 8, depth: 1, embedding: 4}}
optimizer: {{lr: 1.0e-2}}
steps: 3
eval_every: 1
flush_every: 2
histogram: {{every: 10, groups: [embedding], bins: 2}}
"""


def test_a_text_run_records_its_classes_and_the_majority_share_of_its_test_set(
    tmp_path, write_rows, text_caches
):
    # A generated table: balanced train split, test split of 6 label-0 and 14 label-1 rows.
    # By hand: 2 classes; always answering 1 is right on 14 of 20 test rows: chance 0.7.
    words = ["red", "green", "blue", "cat", "dog", "sun"]
    rng = np.random.default_rng(0)

    def rows(labels):
        return [{"text": " ".join(rng.choice(words, 5)), "label": int(y)} for y in labels]

    data = tmp_path / "table"
    data.mkdir()
    write_rows(rows([0, 1] * 20), data / "train.csv")
    write_rows(rows([0] * 6 + [1] * 14), data / "test.csv")
    grid_path = tmp_path / "grid.yaml"
    grid_path.write_text(TEXT_GRID.format(data=data))
    path = tmp_path / "s.zarr"
    grid = load_grid(grid_path)
    store = RunStore.create_or_open(path, grid.runs, grid.settings, grid.text)
    ds = open_runs(path)  # not started: unknown
    assert ds.n_classes.values.tolist() == [0] and np.isnan(ds.chance_accuracy.values).all()
    with pytest.raises(RunInterrupted):  # written when the data are loaded, before step 1
        train_run(store, 0, grid.settings, stop=lambda: True)
    ds = open_runs(path)
    assert ds.n_classes.values.tolist() == [2]
    assert ds.chance_accuracy.values.tolist() == [0.7]
    # A store written before the variables existed lacks them: it validates and opens with
    # 0 and NaN; the runner adds them when it opens it, and the resumed run records them.
    for name in ("n_classes", "chance_accuracy"):
        shutil.rmtree(path / name)
    validate_store(path)
    old = open_runs(path)
    assert old.n_classes.values.tolist() == [0] and np.isnan(old.chance_accuracy.values).all()
    assert train_run(RunStore(path), 0, grid.settings) == "done"
    validate_store(path, deep=True)
    ds = open_runs(path)
    assert ds.n_classes.values.tolist() == [2]
    assert ds.chance_accuracy.values.tolist() == [0.7]
