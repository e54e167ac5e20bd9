"""Property-based fuzzing of grid YAML: every malformed grid ends in a GridError naming where the
problem is (and ``cds-run --dry-run`` exits 2), never in a traceback from deep inside."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from runner.cli import app
from runner.grid import GridError, parse_grid

from .conftest import TINY_GRID

VALID = yaml.safe_load(
    TINY_GRID.format(p=11, n_samples="[40, 80]", seed=0, steps=60, eval_every=1, flush_every=16)
)


def _paths(node, prefix=()):
    """Every key path of the nested mapping (mappings and leaves alike)."""
    for key, value in node.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


PATHS = list(_paths(VALID))

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated_grids(draw):
    """(grid text, top-level key whose change caused it, or None for broken YAML)."""
    grid = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["delete", "retype", "unknown", "broken"]))
    if kind == "broken":
        text = yaml.safe_dump(grid, sort_keys=False)
        cut = draw(st.integers(min_value=1, max_value=len(text) - 1))
        junk = draw(st.sampled_from([":", "{", "[", "- ", "\t", ": :", "]]", "'"]))
        return text[:cut] + junk + text[cut:], None
    path = draw(st.sampled_from(PATHS))
    parent = grid
    for key in path[:-1]:
        parent = parent[key]
    if kind == "delete":
        del parent[path[-1]]
    elif kind == "retype":
        parent[path[-1]] = draw(values)
    else:
        parent[draw(st.text(alphabet="xyz_", min_size=1, max_size=6)) + "_x"] = draw(values)
        path = path[:-1] + ("?",)
    return yaml.safe_dump(grid, sort_keys=False), path[0] if path[0] != "?" else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_grids())
def test_a_mutated_grid_either_expands_or_names_the_problem(case):
    text, top_key = case
    try:
        grid = parse_grid(text, source="fuzz.yaml")
    except GridError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml: "), message
        named = "not valid YAML" not in message
        if top_key is not None and named:
            # the error names the key that was changed (or the YAML path beside it)
            assert top_key in message or "(top level)" in message, (top_key, message)
        return
    assert grid.runs  # whatever is accepted expands to real runs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_grids())
def test_cds_run_dry_run_on_a_mutated_grid_exits_0_or_2_never_with_a_traceback(
    tmp_path_factory, case
):
    text, _ = case
    path = tmp_path_factory.mktemp("fuzz") / "grid.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["--grid", str(path), "--dry-run"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert "error: " in result.output and str(path) in result.output
