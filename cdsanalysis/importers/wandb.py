"""Weights & Biases runs: full history exports on disk, or a project through W&B's public API.

Exports on disk
---------------
One directory per run, as a ``scan_history()`` export script writes them::

    EXPORT/
      <run_id>/
        history.csv        (or history.parquet) pandas.DataFrame(run.scan_history())
        config.yaml        (or config.json)     the run's config

``SOURCE`` is ``EXPORT`` (every directory under it holding a ``history.csv`` or
``history.parquet`` is a run, named by its path relative to ``EXPORT``), one run directory, or one
history file (any ``.csv``/``.parquet`` with a ``_step`` column; its directory's config is used).

History columns are W&B's: ``_step`` (the step), the system columns ``_runtime`` and
``_timestamp`` (and any other column starting with ``_``), which are skipped, and one column per
metric, NaN (empty in CSV) on the rows where that metric was not logged. Each metric becomes a
series of only the rows where it has a value. A NaN that was logged is indistinguishable from one
that was not in a W&B export, so both are treated as not logged. Non-numeric columns (media,
tables, strings) are skipped. The option ``step_column`` (default ``"_step"``) names another
column as the step (``--option step_column=trainer/global_step``), e.g. where ``wandb.log`` was
called several times per training step without ``step=``, so that ``_step`` counts calls. Steps
are returned as logged; W&B's ``_step`` counts from 0 when ``wandb.log`` is called without
``step=``, so such an export needs the writer's ``--step-offset 1`` (the rule in
:mod:`cdsanalysis.importers.base`; without it the import stops at step 0 and says so). The
``read_runs`` option ``step_offset`` (int, default 0) adds an offset for callers outside the
writer; ``cds-analyze import`` refuses it. A step that is not an integer, or a step logged twice
with different values, is a ``ValueError`` naming the file, column and row or step.

Config: ``config.yaml`` in W&B's own format (``key: {desc: ..., value: ...}`` entries, plus the
bookkeeping keys ``wandb_version`` and ``_wandb``, which are skipped), or a JSON object either in
the same ``{"value": ...}`` form or plain (``json.dump(run.config)``). Nested dicts are flattened to
dotted keys (``optimizer.lr``), as W&B's UI shows them; values keep their YAML/JSON types (ints as
ints).

Online
------
``SOURCE`` ``wandb://ENTITY/PROJECT`` (or ``wandb:ENTITY/PROJECT``) reads every run of that project
through ``wandb.Api().runs("ENTITY/PROJECT")``, each run's full history through
``run.scan_history()`` (``run.history()`` is sampled, so it is never used) and its config through
``run.config``; runs are named by ``run.id``. ``wandb`` is imported only on this path and is not a
dependency: without it the error says ``pip install wandb``; credentials come from W&B's usual
``WANDB_API_KEY`` or ``wandb login``. This path is real code but is NOT tested here (no network,
no W&B account): the tests cover the on-disk export, which shares the conversion
(:func:`history_to_scalars`, :func:`flatten_config`) with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cdsanalysis.importers.base import ImportedRun, ScalarSeries

STEP_COLUMN = "_step"
"""W&B's history step column (default of the ``step_column`` option)."""

HISTORY_NAMES = ("history.csv", "history.parquet")
CONFIG_NAMES = ("config.yaml", "config.yml", "config.json")
WANDB_CONFIG_KEYS = frozenset({"wandb_version", "_wandb"})
"""Bookkeeping keys of W&B's ``config.yaml``, not part of the run's configuration."""

URL_PREFIX = "wandb:"


def _unwrap(entry: Any) -> Any:
    """W&B stores each config entry as ``{desc: ..., value: ...}``; plain values pass through."""
    if isinstance(entry, dict) and "value" in entry and set(entry) <= {"desc", "value"}:
        return entry["value"]
    return entry


def flatten_config(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The run's configuration from W&B's config (file format or ``run.config``), flattened."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: the config is not a mapping of names to values")
    config: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                add(f"{prefix}.{key}", inner)
        else:
            config[prefix] = value

    for key, entry in raw.items():
        if key in WANDB_CONFIG_KEYS or str(key).startswith("_wandb"):
            continue
        add(str(key), _unwrap(entry))
    return config


def read_config(path: Path) -> dict[str, Any]:
    """Read a run's ``config.yaml`` (W&B's format) or config JSON."""
    text = path.read_text()
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()}: {error}") from error
    return flatten_config(raw or {}, str(path))


def read_history(path: Path) -> pd.DataFrame:
    """Read one history export (CSV or Parquet)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: a W&B history export must be .csv or .parquet")


def history_to_scalars(
    history: pd.DataFrame, where: str, step_column: str = STEP_COLUMN, step_offset: int = 0
) -> dict[str, ScalarSeries]:
    """Turn a wide W&B history (one row per logged step) into one series per metric column.

    ``where`` names the source (file or run URL) in series and error messages; errors give the
    0-based row and, for CSV files, the line (the header is line 1).
    """
    if step_column not in history.columns:
        raise ValueError(f"{where}: no step column {step_column!r} (columns: {list(history)})")
    raw_steps = pd.to_numeric(history[step_column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(raw_steps) | (raw_steps != np.round(raw_steps)))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{where}: column {step_column!r} row {row} (line {row + 2} of a CSV): step "
            f"{history[step_column].iloc[row]!r} is not an integer"
        )
    steps = raw_steps.astype(np.int64) + step_offset
    scalars: dict[str, ScalarSeries] = {}
    for column in history.columns:
        name = str(column)
        if name == step_column or name.startswith("_"):
            continue
        values = history[column]
        if values.dtype == bool:
            values = values.astype(np.float64)
        if not pd.api.types.is_numeric_dtype(values):
            continue  # media, tables, strings: nothing to analyse as a curve
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        logged = ~np.isnan(values)
        scalars[name] = _dedupe(steps[logged], values[logged], f"{where}: column {name!r}")
    return scalars


def _dedupe(steps: np.ndarray, values: np.ndarray, where: str) -> ScalarSeries:
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    duplicate = np.flatnonzero(steps[1:] == steps[:-1])
    conflict = duplicate[values[duplicate] != values[duplicate + 1]]
    if conflict.size:
        i = int(conflict[0])
        raise ValueError(
            f"{where}: step {int(steps[i])} logged twice with different values "
            f"({values[i]!r} and {values[i + 1]!r})"
        )
    keep = np.ones(steps.size, dtype=bool)
    keep[duplicate + 1] = False
    return ScalarSeries(steps=steps[keep], values=values[keep], where=where)


def _config_beside(directory: Path) -> Path | None:
    found = [directory / name for name in CONFIG_NAMES if (directory / name).is_file()]
    if len(found) > 1:
        raise ValueError(f"{directory}: several configs ({', '.join(p.name for p in found)})")
    return found[0] if found else None


def _history_in(directory: Path) -> Path | None:
    found = [directory / name for name in HISTORY_NAMES if (directory / name).is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"{directory}: several history exports ({names})")
    return found[0] if found else None


def find_runs(source: Path) -> dict[str, Path]:
    """Map each run's name to its history file (see the module docstring for the layout)."""
    source = Path(source)
    if source.is_file():
        name = source.resolve().parent.name if source.name in HISTORY_NAMES else source.stem
        return {name: source}
    if not source.is_dir():
        raise ValueError(f"{source}: no such file or directory")
    runs: dict[str, Path] = {}
    for directory in sorted([source, *(p for p in source.rglob("*") if p.is_dir())]):
        history = _history_in(directory)
        if history is not None:
            own = directory == source
            name = source.resolve().name if own else directory.relative_to(source).as_posix()
            runs[name] = history
    if not runs:
        raise ValueError(f"{source}: no W&B history export ({' or '.join(HISTORY_NAMES)}) under it")
    return runs


def read_export(name: str, history_path: Path, options: Mapping[str, Any]) -> ImportedRun:
    """Read one exported run: its history file and the config beside it."""
    config_path = _config_beside(history_path.parent)
    config = read_config(config_path) if config_path is not None else {}
    scalars = history_to_scalars(
        read_history(history_path),
        str(history_path),
        step_column=str(options.get("step_column", STEP_COLUMN)),
        step_offset=int(options.get("step_offset", 0)),
    )
    sources = (str(history_path),) + ((str(config_path),) if config_path else ())
    return ImportedRun(name=name, config=config, scalars=scalars, sources=sources)


def read_online(project: str, options: Mapping[str, Any]) -> Iterator[ImportedRun]:
    """Every run of ``ENTITY/PROJECT`` through W&B's public API (untested here: no network)."""
    try:
        import wandb  # lazily: only online users need it
    except ImportError as error:
        raise ImportError(
            f"importing {URL_PREFIX}//{project} needs the wandb client: pip install wandb"
        ) from error
    for run in wandb.Api().runs(project):
        where = f"{URL_PREFIX}//{project}/{run.id}"
        history = pd.DataFrame.from_records(list(run.scan_history()))
        scalars = history_to_scalars(
            history,
            where,
            step_column=str(options.get("step_column", STEP_COLUMN)),
            step_offset=int(options.get("step_offset", 0)),
        )
        config = flatten_config(dict(run.config), where)
        yield ImportedRun(name=run.id, config=config, scalars=scalars, sources=(where,))


def _online_project(source: Path | str) -> str | None:
    # Path("wandb://e/p") collapses the double slash to "wandb:/e/p": accept every spelling.
    text = str(source)
    if not text.startswith(URL_PREFIX):
        return None
    project = text[len(URL_PREFIX) :].strip("/")
    if project.count("/") != 1:
        raise ValueError(f"{text}: expected wandb://ENTITY/PROJECT")
    return project


class WandbImporter:
    """W&B ``scan_history()`` exports on disk, or ``wandb://ENTITY/PROJECT`` online."""

    kind = "wandb"
    description = (
        "W&B history exports (history.csv|parquet + config.yaml) or wandb://ENTITY/PROJECT"
    )
    options: Mapping[str, str] = {
        "step_column": f"the history column holding the training step (default {STEP_COLUMN!r})"
    }

    def can_open(self, source: Path) -> bool:
        if str(source).startswith(URL_PREFIX):
            return True
        source = Path(source)
        if source.is_dir():
            return any(p.name in HISTORY_NAMES for p in source.rglob("history.*"))
        if source.suffix == ".csv":
            with source.open() as handle:
                return STEP_COLUMN in handle.readline().strip().split(",")
        if source.suffix == ".parquet":
            import pyarrow.parquet as pq

            return STEP_COLUMN in pq.read_schema(source).names
        return False

    def read_runs(self, source: Path, options: Mapping[str, Any]) -> Iterator[ImportedRun]:
        project = _online_project(source)
        if project is not None:
            yield from read_online(project, options)
            return
        for name, history_path in find_runs(Path(source)).items():
            yield read_export(name, history_path, options)


IMPORTER = WandbImporter()
