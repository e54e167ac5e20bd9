"""Tiny real grids (p = 11 or 23, width 32) that train in seconds on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY_GRID = """\
name: tiny
task: {{p: {p}}}
n_samples: {n_samples}
seed: {seed}
model: {{width: 32, depth: 1, heads: 4, n_positions: 8}}
optimizer: {{lr: 1.0e-3, weight_decay: 1.0}}
steps: {steps}
eval_every: {eval_every}
flush_every: {flush_every}
histogram: {{every: 20, groups: [embedding, mlp], bins: 16, range: [-0.2, 0.2]}}
"""


@pytest.fixture
def tiny_grid(tmp_path: Path):
    """Write a tiny grid file and return its path; keyword arguments fill the template."""

    def make(name: str = "grid.yaml", **fields) -> Path:
        values = dict(p=11, n_samples="[40, 80]", seed=0, steps=60, eval_every=1, flush_every=16)
        values.update(fields)
        path = tmp_path / name
        path.write_text(TINY_GRID.format(**values))
        return path

    return make


#: The real ``cds-run`` entry point, started as its own process.
CDS_RUN = [sys.executable, "-c", "from runner.cli import main; main()"]


def start_cds_run(*args: str, **popen_kwargs) -> subprocess.Popen:
    """Start ``cds-run ARGS`` in the background (stdout discarded, stderr captured as text)."""
    popen_kwargs.setdefault("stdout", subprocess.DEVNULL)
    popen_kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([*CDS_RUN, *args], text=True, **popen_kwargs)


def cds_run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cds-run ARGS`` to completion."""
    result = subprocess.run([*CDS_RUN, *args], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"cds-run {' '.join(args)} failed:\n{result.stderr}")
    return result


@pytest.fixture
def run_cli():
    return cds_run


@pytest.fixture(scope="session")
def _session_text_caches(tmp_path_factory):
    """Fresh on-disk caches for the whole session: ours (CDS_CACHE_DIR) and datasets' own."""
    datasets_config = pytest.importorskip("datasets.config")
    root = tmp_path_factory.mktemp("text_caches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDS_CACHE_DIR", str(root / "cds"))
        mp.setenv("HF_DATASETS_CACHE", str(root / "hf_datasets"))
        # datasets reads HF_DATASETS_CACHE at import time, so set its resolved value too.
        mp.setattr(datasets_config, "HF_DATASETS_CACHE", root / "hf_datasets")
        yield root


@pytest.fixture
def text_caches(_session_text_caches):
    """Session-wide tmp caches on disk, and empty in-process caches of runner.tasks.text."""
    from runner.tasks.text import clear_caches

    clear_caches()
    yield _session_text_caches
    clear_caches()


@pytest.fixture(scope="session")
def imdb_rows(shared_data):
    """Real IMDB rows: 300 of each class from train, 100 of each from test (as python lists)."""
    pq = pytest.importorskip("pyarrow.parquet")
    out = {}
    for split, k in (("train", 300), ("test", 100)):
        table = pq.read_table(shared_data / "imdb" / f"{split}.parquet").to_pylist()
        out[split] = table[:k] + table[-k:]  # sorted neg then pos
    return out


def write_rows(rows, path):
    """Write rows (dicts) as parquet, csv or jsonl, chosen by the path's suffix."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        import pandas as pd

        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def imdb_dir(imdb_rows, tmp_path):
    def make(ext="parquet", splits=("train", "test")):
        directory = tmp_path / f"{ext}-{'-'.join(splits)}"
        directory.mkdir(exist_ok=True)
        for split in splits:
            write_rows(imdb_rows[split], directory / f"{split}.{ext}")
        return directory

    return make


@pytest.fixture(name="write_rows")
def write_rows_fixture():
    return write_rows
