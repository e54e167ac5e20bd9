import pytest

from cdssearch.space import parse_search_grid
from runner.grid import GridError, parse_grid

BASE = """\
name: s
task: {name: modular_addition, p: 23}
steps: 10
"""


def test_a_sample_range_parses_to_whole_sizes_and_builds_ordinary_runs():
    grid = parse_search_grid(BASE + "n_samples: {min: 40, max: 300}\n")
    assert (grid.n_min, grid.n_max, grid.size_field) == (40, 300, "n_samples")
    runs = grid.runs([(55, 0), (55, 1), (120, 0)])
    assert [(r.n_samples, r.seed) for r in runs] == [(55, 0), (55, 1), (120, 0)]
    assert len({r.run_id for r in runs}) == 3
    assert all(r.task.p == 23 and r.steps == 10 for r in runs)


def test_a_fraction_range_becomes_sample_counts_of_the_train_split():
    # p = 23: int(0.75 * 529) = 396 training pairs; 0.1 -> ceil(39.6) = 40, 0.5 -> 198
    grid = parse_search_grid(BASE + "data_fraction: {min: 0.1, max: 0.5}\n")
    assert (grid.n_min, grid.n_max, grid.size_field) == (40, 198, "data_fraction")


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("n_samples: {min: 300, max: 40}", "n_samples: min (300) must be below max (40)"),
        ("n_samples: {min: 40}", "n_samples: a search range has exactly the keys min and max"),
        ("n_samples: {min: 0.5, max: 300}", "n_samples.min: give a whole number"),
        ("data_fraction: {min: 0.1, max: 1.5}", "data_fraction.max: give a fraction in (0, 1]"),
        ("n_samples: {min: 40, max: 5000}", "n_samples: max 5000 exceeds the train split of 396"),
        ("n_samples: {min: 40, max: 41}", "n_samples: the range holds fewer than 3"),
        (
            "n_samples: [40, 80]",
            "n_samples: gives [40, 80]; --search cds needs the size as a range",
        ),
    ],
)
def test_a_malformed_range_is_refused_naming_the_field(size, message):
    with pytest.raises(
        GridError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        parse_search_grid(BASE + size + "\n")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("seed: [0, 1]\n", "seed: not allowed with --search cds"),
        ("alpha: [1.0, 2.0]\n", "alpha: a list sweeps it"),
        ("optimizer: {lr: [0.001, 0.01]}\n", "optimizer.lr: a list sweeps it"),
    ],
)
def test_other_swept_fields_and_seeds_are_refused(extra, field):
    with pytest.raises(GridError, match=field):
        parse_search_grid(BASE + "n_samples: {min: 40, max: 300}\n" + extra)


def test_a_plain_grid_with_a_range_says_it_is_for_the_search():
    with pytest.raises(GridError, match=r"n_samples: a range \{min, max\} is searched by cds-run"):
        parse_grid(BASE + "n_samples: {min: 40, max: 300}\n")
