import xarray as xr

from cdsanalysis.notices import add_warning, merge_warnings, warning_lines, warnings_of


def test_warnings_are_kept_once_in_order_on_a_result():
    ds = xr.Dataset()
    add_warning(ds.attrs, "b first")
    add_warning(ds.attrs, "a second")
    add_warning(ds.attrs, "b first")
    assert warnings_of(ds) == ["b first", "a second"]
    assert warning_lines(warnings_of(ds)) == ["Warning: b first", "Warning: a second"]


def test_a_single_string_attribute_reads_as_one_warning_and_groups_merge():
    assert warnings_of({"warnings": "only one"}) == ["only one"]
    assert warnings_of({}) == []
    assert merge_warnings(["x", "y"], ["y", "z"]) == ["x", "y", "z"]
