"""schemas/README.md's tables are what the schema JSON says."""

from __future__ import annotations

import copy

import pytest

import schemas
from schemas import docs


def test_the_readme_tables_are_generated_from_the_schema():
    current = docs.README.read_text()
    assert docs.render(current) == current, "run: python -m schemas.docs"
    assert docs.main(["--check"]) == 0


def test_a_schema_change_shows_in_the_rendered_page():
    schema = copy.deepcopy(schemas.load_schema())
    schema["variables"]["train_loss"]["units"] = "bits"
    schema["extra_run_coordinates"]["known"]["new_knob"] = {
        "dtype": "float64", "units": "knobs", "description": "a coordinate added later",
    }
    rendered = docs.render(docs.README.read_text(), schema)
    assert "| `train_loss` | run, step | float32 | metric | bits |" in rendered
    assert "| `new_knob` | float64 | knobs | a coordinate added later |" in rendered
    assert rendered != docs.README.read_text()


def test_every_table_needs_its_block():
    text = docs.README.read_text()
    start = text.index("<!-- generated: checkpoint -->")
    end = text.index("<!-- end generated -->", start) + len("<!-- end generated -->")
    with pytest.raises(ValueError, match="checkpoint"):
        docs.render(text[:start] + text[end:])
