"""The layers: runner and cdsanalysis never import each other; cdssearch sits above both and
is reached from the runner only through cds-run --search's lazy import (runner/cli.py)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (static ``import`` statements)."""
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_runner_and_cdsanalysis_never_import_each_other_nor_the_search():
    for module, names in _imports("runner").items():
        assert not names & {"cdsanalysis", "cdssearch"}, module
    for module, names in _imports("cdsanalysis").items():
        assert not names & {"runner", "cdssearch"}, module


def test_the_search_imports_both_and_the_runner_loads_it_only_when_asked():
    imported = set().union(*_imports("cdssearch").values())
    assert {"runner", "cdsanalysis"} <= imported
    code = "import sys, runner.cli; print('cdsanalysis' in sys.modules, 'cdssearch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
