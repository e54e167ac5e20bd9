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
