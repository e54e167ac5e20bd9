"""Naming a run on input: a run id, a unique prefix of one, or (kept for compatibility) an index."""

from __future__ import annotations

import pytest

from schemas.run_names import (
    MIN_ID_PREFIX_CHARS,
    RUN_ID_SHOWN_CHARS,
    parse_run_selection,
    resolve_run,
    shown_id,
)

#: Hand-made ids: two share their first 7 characters, one is all decimal digits.
IDS = ["3fa2c1d0e9b8", "3fa2c1d7a001", "9b0e77aa1234", "123456789012"]


def test_a_full_id_or_a_unique_prefix_names_its_run():
    assert [resolve_run(i, IDS) for i in IDS] == [0, 1, 2, 3]
    assert resolve_run("9b0e77", IDS) == 2 and resolve_run("3fa2c1d7", IDS) == 1
    # an all-digit prefix long enough to be an id, not an index
    assert resolve_run("123456", IDS) == 3


def test_an_ambiguous_unknown_or_short_prefix_is_refused_with_the_reason():
    two = r"is the start of 2 run ids \(3fa2c1d0e9b8, 3fa2c1d7a001\)"
    with pytest.raises(ValueError, match=two):
        resolve_run("3fa2c1", IDS)
    with pytest.raises(ValueError, match="no run id starts with 'abcdef'"):
        resolve_run("abcdef", IDS)
    with pytest.raises(ValueError, match=f"at least {MIN_ID_PREFIX_CHARS} of its first"):
        resolve_run("9b0e", IDS)


def test_a_short_number_is_still_an_index():
    assert resolve_run("2", IDS) == 2 and resolve_run(" 0 ", IDS) == 0
    with pytest.raises(ValueError, match=r"run index 4 is outside 0\.\.3"):
        resolve_run("4", IDS)


def test_a_selection_mixes_ids_prefixes_indices_and_ranges():
    assert parse_run_selection("9b0e77,0", IDS) == [0, 2]
    assert parse_run_selection("1-3", IDS) == [1, 2, 3]
    assert parse_run_selection("123456789012, 3fa2c1d0", IDS) == [0, 3]
    with pytest.raises(ValueError, match="empty"):
        parse_run_selection("3-1", IDS)
    with pytest.raises(ValueError, match="no run id starts with"):
        parse_run_selection("0,zzzzzz", IDS)


def test_tables_show_the_whole_id():
    assert RUN_ID_SHOWN_CHARS == 12 and [shown_id(i) for i in IDS] == IDS
