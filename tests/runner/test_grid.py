from __future__ import annotations

import pytest

from runner.grid import GridError, parse_grid

BASE = "task: {p: 47}\nsteps: 100\n"


def test_cartesian_product_in_file_order():
    grid = parse_grid(BASE + "n_samples: [100, 200, 300]\nseed: [0, 1]\nalpha: 2.5\n")
    assert grid.sweep_paths == ("n_samples", "seed")
    assert [(r.n_samples, r.seed) for r in grid.runs] == [
        (100, 0),
        (100, 1),
        (200, 0),
        (200, 1),
        (300, 0),
        (300, 1),
    ]
    assert all(r.alpha == 2.5 for r in grid.runs)


def test_tuple_field_is_a_value_unless_given_a_list_of_lists():
    fixed = parse_grid(BASE + "n_samples: 100\noptimizer: {betas: [0.9, 0.99]}\n")
    assert len(fixed.runs) == 1 and fixed.runs[0].optimizer.betas == (0.9, 0.99)
    swept = parse_grid(BASE + "n_samples: 100\noptimizer: {betas: [[0.9, 0.98], [0.8, 0.9]]}\n")
    assert [r.optimizer.betas for r in swept.runs] == [(0.9, 0.98), (0.8, 0.9)]
    assert swept.sweep_paths == ("optimizer.betas",)


def test_nested_sweep_and_run_ids_are_stable():
    text = BASE + "n_samples: 100\noptimizer: {lr: [1.0e-3, 1.0e-4]}\n"
    first, second = parse_grid(text), parse_grid(text)
    assert [r.optimizer.lr for r in first.runs] == [1e-3, 1e-4]
    assert [r.run_id for r in first.runs] == [r.run_id for r in second.runs]
    assert first.runs[0].run_id != first.runs[1].run_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "n_samples: 100\noptimiser: {lr: 1}\n", "optimiser: unknown key"),
        (BASE + "n_samples: 100\noptimizer: {lr: -0.1}\n", "optimizer.lr: Input should be greater"),
        (
            BASE + "n_samples: 100\noptimizer: {decay_scope: norms}\n",
            "optimizer.decay_scope: Input should be 'all' or 'weights' (got 'norms')",
        ),
        (
            BASE + "n_samples: 100\noptimizer: {learning_rate: 1}\n",
            "optimizer.learning_rate: unknown",
        ),
        (
            BASE + "n_samples: [100, 5000]\n",
            "n_samples[1]: n_samples = 5000 exceeds the train split",
        ),
        (BASE + "n_samples: 100\nmodel: {width: 30, heads: 4}\n", "model.heads: width (30)"),
        (BASE + "n_samples: 100\nseed: []\n", "seed: an empty list"),
        (BASE + "n_samples: 100\nhistogram: {every: [10, 20]}\n", "histogram.every: is shared"),
        (BASE + "n_samples: 100\nsteps: ten\n", "steps: Input should be a valid integer"),
        (BASE + "n_samples: [100, 100]\n", "duplicate runs (n_samples: repeats a value)"),
        ("n_samples: 100\n", "steps: Field required"),
        (BASE + "n_samples: 100\nhistogram: {groups: [mlp, ffn]}\n", "histogram.groups: unknown"),
        ("- a\n- b\n", "must be a mapping"),
        ("n_samples: [100\n", "not valid YAML"),
    ],
)
def test_bad_grids_name_the_yaml_path(text, expected):
    with pytest.raises(GridError) as info:
        parse_grid(text, source="g.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("g.yaml")


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        (
            "optimiser: {lr: 1}",
            "optimiser: unknown key; remove it or check its spelling (did you mean 'optimizer'?)",
        ),
        ("flush_evry: 10", "(did you mean 'flush_every'?)"),
        ("data_fractoin: 0.5", "(did you mean 'data_fraction'?)"),
        (
            "optimizer: {wieght_decay: 1}",
            "optimizer.wieght_decay: unknown key; remove it or "
            "check its spelling (did you mean 'weight_decay'?)",
        ),
    ],
)
def test_unknown_key_suggests_the_closest_known_one(typo, expected):
    with pytest.raises(GridError) as info:
        parse_grid(BASE + f"n_samples: 100\n{typo}\n")
    assert expected in str(info.value)


def test_unknown_key_far_from_every_known_one_gets_no_suggestion():
    with pytest.raises(GridError) as info:
        parse_grid(BASE + "n_samples: 100\nzzzzqqq: 1\n")
    assert "zzzzqqq: unknown key; remove it or check its spelling" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_runs_are_selected_by_id_prefix_or_index_in_a_dry_run(tmp_path):
    """``cds-run --runs`` takes run ids (or unique prefixes), as ``--dry-run`` prints them;
    indices stay accepted."""
    from typer.testing import CliRunner

    from runner.cli import app

    path = tmp_path / "grid.yaml"
    path.write_text("name: ids\nn_samples: [100, 200, 300]\nsteps: 10\n")
    ids = [r.run_id for r in parse_grid(path.read_text()).runs]
    by_id = CliRunner().invoke(app, ["--grid", str(path), "--dry-run", "--runs", f"{ids[2][:8]}"])
    assert by_id.exit_code == 0, by_id.output
    assert ids[2] in by_id.output and ids[0] not in by_id.output
    assert "1 runs selected" in by_id.output
    by_index = CliRunner().invoke(app, ["--grid", str(path), "--dry-run", "--runs", "0-1"])
    assert ids[0] in by_index.output and ids[1] in by_index.output and ids[2] not in by_index.output
    bad = CliRunner().invoke(app, ["--grid", str(path), "--dry-run", "--runs", "ffffffffff"])
    assert bad.exit_code == 2 and "no run id starts with 'ffffffffff'" in bad.output
