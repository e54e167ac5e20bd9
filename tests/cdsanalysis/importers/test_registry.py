"""The registry: kinds, lazy imports, and clear errors for what cannot load."""

from __future__ import annotations

import sys

import pytest

from cdsanalysis.importers import registry
from cdsanalysis.importers.registry import ImporterError, get_importer, kinds


def test_every_kind_is_listed_and_ours_load():
    assert kinds() == ["tensorboard", "wandb", "table", "authors"]
    for kind in ("table", "authors"):
        importer = get_importer(kind)
        assert importer.kind == kind and importer.description


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ImporterError, match="unknown import kind 'csv'; choose one of tensorb"):
        get_importer("csv")


def test_missing_module_and_missing_dependency_are_named(tmp_path, monkeypatch):
    (tmp_path / "needs_absent_pkg.py").write_text("import cds_absent_package_xyz\nIMPORTER = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.IMPORTERS, "absent", "needs_absent_pkg")
    monkeypatch.setitem(registry.IMPORTERS, "gone", "cdsanalysis.importers.no_such_format")
    with pytest.raises(ImporterError, match="needs the package 'cds_absent_package_xyz'"):
        get_importer("absent")
    with pytest.raises(ImporterError, match="'gone' importer .* is not part of this install"):
        get_importer("gone")
    sys.modules.pop("needs_absent_pkg", None)


def test_guess_kinds(tmp_path):
    (tmp_path / "a.log").write_text("INFO:root:Step: 1, Train Loss: 1.0\n")
    assert "authors" in registry.guess_kinds(tmp_path / "a.log")
    (tmp_path / "t.csv").write_text("run,step,metric,value\n")
    assert "table" in registry.guess_kinds(tmp_path / "t.csv")


def test_options_are_checked_against_what_the_importer_takes():
    pytest.importorskip("pandas")
    registry.check_options("wandb", {"step_column": "trainer/global_step"})  # taken
    with pytest.raises(ImporterError, match="--option step_colum: the 'wandb' importer takes "):
        registry.check_options("wandb", {"step_colum": "x"})  # a typo is not ignored
    with pytest.raises(ImporterError, match="takes no --option"):
        registry.check_options("table", {"step_column": "x"})
    # the offset has its own flag, applied once by the writer: never twice through --option
    for kind in ("wandb", "authors"):
        with pytest.raises(ImporterError, match="--option step_offset: give --step-offset N"):
            registry.check_options(kind, {"step_offset": 1})


def test_the_import_command_refuses_an_option_before_writing(tmp_path):
    from typer.testing import CliRunner

    from cdsanalysis.cli import app

    log = tmp_path / "run.log"
    log.write_text("INFO:root:Step: 1, Train Loss: 1.0\n")
    out = tmp_path / "x.zarr"
    args = ["import", "authors", str(log), "--out", str(out), "--option", "step_offset=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "give --step-offset N" in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [log]
