"""The benchmarks are not an installed package: they run from the repository root
(``python -m benchmarks``), so their tests import them from there whatever the working
directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def repository_root() -> Path:
    return ROOT
