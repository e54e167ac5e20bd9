"""CSV and Parquet tables of runs, long (tidy) or wide.

- **Long**: columns ``run``, ``step``, ``metric``, ``value`` plus configuration columns (each
  constant within a run). One file may hold many runs. What ``cds-analyze export`` writes.
- **Wide**: a ``step`` column, one column per metric, and configuration columns; one run per
  file (named by the file's path below SOURCE), or many with a ``run`` column. A column is
  configuration when it holds one value per run and its name is not a metric of the default
  table (``train_acc``, ``eval/loss``, ...; see :mod:`cdsanalysis.importers.mapping`); every
  other column is a metric.

SOURCE is a file (``.csv``, ``.parquet``, ``.pq``) or a directory searched recursively for them.
A table ``<stem>.config<suffix>`` beside a table (as ``cds-analyze export`` writes) holds more
configuration per run (a ``run`` column plus fields), joined on ``run``. Steps are taken as the
run store's (1-based: step 1 is the initialisation; ``--step-offset 1`` for tables counting from
0). Empty cells are "not measured". CSV errors name the file and line (the header is line 1),
Parquet errors the row (0-based).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cdsanalysis.export import CSV_NAN, LONG_COLUMNS
from cdsanalysis.importers.base import ImportedRun, ScalarSeries
from cdsanalysis.importers.mapping import DEFAULT_METRIC_NAMES, normalise

SUFFIXES = (".csv", ".parquet", ".pq")
CONFIG_INFIX = ".config"


def _is_config_table(path: Path) -> bool:
    return path.stem.endswith(CONFIG_INFIX)


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and p.suffix.lower() in SUFFIXES and not _is_config_table(p)
    )


def _read(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            return _typed_columns(pd.read_csv(path, keep_default_na=False, dtype=str))
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot be read as a table ({exc})") from None


def _typed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """CSV text typed per column: numeric where every non-empty cell is a number (empty cells
    and ``NaN`` then mean not measured), text otherwise (an empty text cell stays '')."""
    for column in frame.columns:
        text = frame[column]
        filled = text[text != ""]
        if not len(filled):
            continue
        numbers = pd.to_numeric(filled, errors="coerce")
        spelt_nan = filled.str.lower() == CSV_NAN.lower()
        if (numbers.notna() | spelt_nan).all():
            frame[column] = pd.to_numeric(text.replace("", CSV_NAN), errors="coerce")
    return frame


def _row_label(path: Path, index: int) -> str:
    """Where row ``index`` (0-based, of the data) is: a CSV line (header = line 1) or a row."""
    if path.suffix.lower() == ".csv":
        return f"{path}, line {index + 2}"
    return f"{path}, row {index}"


def _integer_steps(frame: pd.DataFrame, path: Path) -> np.ndarray:
    if "step" not in frame.columns:
        raise ValueError(
            f"{path}: no 'step' column (columns: {', '.join(map(str, frame.columns))})"
        )
    steps = pd.to_numeric(frame["step"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(steps) | (steps != np.round(steps)))
    if len(bad):
        raise ValueError(
            f"{_row_label(path, int(bad[0]))}, column 'step': {frame['step'].iloc[bad[0]]!r} is "
            "not a whole number of steps"
        )
    return steps.astype(np.int64)


def _numeric(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & raw.notna().to_numpy() & (raw.astype(str) != ""))
    bad = [i for i in bad if str(raw.iloc[i]).lower() != "nan"]
    if bad:
        raise ValueError(
            f"{_row_label(path, int(bad[0]))}, column {column!r}: {raw.iloc[bad[0]]!r} is not a "
            "number"
        )
    return values


def _per_run_config(
    frame: pd.DataFrame, columns: list[str], path: Path, run: str
) -> dict[str, Any]:
    config = {}
    for column in columns:
        distinct = frame[column].drop_duplicates()
        if len(distinct) > 1:
            first = frame.index[frame[column] != frame[column].iloc[0]][0]
            raise ValueError(
                f"{_row_label(path, int(first))}, column {column!r}: run {run!r} has more than "
                f"one value ({distinct.iloc[0]!r}, {distinct.iloc[1]!r}); a configuration column "
                "holds one value per run"
            )
        value = distinct.iloc[0]
        config[str(column)] = value.item() if isinstance(value, np.generic) else value
    return config


def _check_duplicates(
    path: Path, run: str, metric: str, rows: np.ndarray, steps: np.ndarray, values: np.ndarray
) -> None:
    """Two rows of one run, metric and step with different values: name both lines."""
    order = np.argsort(steps, kind="stable")
    s, v, r = steps[order], values[order], rows[order]
    same_step = np.flatnonzero(np.diff(s) == 0)
    for i in same_step:
        if not (v[i] == v[i + 1] or (np.isnan(v[i]) and np.isnan(v[i + 1]))):
            raise ValueError(
                f"{_row_label(path, int(r[i + 1]))}: run {run!r}, metric {metric!r}, step "
                f"{int(s[i])} has value {v[i + 1]!r}, but {_row_label(path, int(r[i]))} has "
                f"{v[i]!r}; keep one"
            )


def _series(
    path: Path, run: str, metric: str, rows: np.ndarray, steps: np.ndarray, values: np.ndarray
) -> ScalarSeries:
    measured = ~np.isnan(values)
    rows, steps, values = rows[measured], steps[measured], values[measured]
    _check_duplicates(path, run, metric, rows, steps, values)
    where = f"{path} (run {run!r}, metric {metric!r})"
    return ScalarSeries(steps=steps, values=values, where=where)


def _long_runs(frame: pd.DataFrame, path: Path, name: str) -> Iterator[ImportedRun]:
    steps = _integer_steps(frame, path)
    values = _numeric(frame, "value", path)
    rows = np.arange(len(frame))
    run_column = (
        frame["run"].astype(str) if "run" in frame.columns else pd.Series([name] * len(frame))
    )
    config_columns = [c for c in frame.columns if c not in LONG_COLUMNS]
    for run, index in run_column.groupby(run_column, sort=False).groups.items():
        at = np.asarray(frame.index.get_indexer(index))
        part = frame.iloc[at]
        config = _per_run_config(part, config_columns, path, str(run))
        scalars = {}
        metrics = part["metric"].astype(str)
        for metric, m_index in metrics.groupby(metrics, sort=False).groups.items():
            m_at = at[np.asarray(part.index.get_indexer(m_index))]
            scalars[str(metric)] = _series(
                path, str(run), str(metric), rows[m_at], steps[m_at], values[m_at]
            )
        yield ImportedRun(name=str(run), config=config, scalars=scalars, sources=(str(path),))


def _is_metric_name(column: str) -> bool:
    return normalise(column) in DEFAULT_METRIC_NAMES


def _wide_runs(frame: pd.DataFrame, path: Path, name: str) -> Iterator[ImportedRun]:
    steps = _integer_steps(frame, path)
    rows = np.arange(len(frame))
    run_column = (
        frame["run"].astype(str) if "run" in frame.columns else pd.Series([name] * len(frame))
    )
    candidates = [c for c in frame.columns if c not in ("run", "step")]
    groups = run_column.groupby(run_column, sort=False).groups
    constant = {
        c
        for c in candidates
        if not _is_metric_name(str(c))
        and all(
            frame[c].iloc[frame.index.get_indexer(i)].nunique(dropna=False) == 1
            for i in groups.values()
        )
    }
    metrics = [c for c in candidates if c not in constant]
    numeric = {c: _numeric(frame, c, path) for c in metrics}
    for run, index in groups.items():
        at = np.asarray(frame.index.get_indexer(index))
        config = _per_run_config(
            frame.iloc[at], [c for c in candidates if c in constant], path, str(run)
        )
        scalars = {
            str(c): _series(path, str(run), str(c), rows[at], steps[at], numeric[c][at])
            for c in metrics
        }
        yield ImportedRun(name=str(run), config=config, scalars=scalars, sources=(str(path),))


def _companion_config(path: Path) -> dict[str, dict[str, Any]]:
    """Per-run configuration from ``<stem>.config<suffix>`` beside ``path`` (empty if none)."""
    companion = path.with_name(f"{path.stem}{CONFIG_INFIX}{path.suffix}")
    if not companion.exists():
        return {}
    frame = _read(companion)
    if "run" not in frame.columns:
        raise ValueError(f"{companion}: a config table needs a 'run' column")
    out: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(frame.to_dict(orient="records")):
        run = str(row.pop("run"))
        if run in out:
            raise ValueError(f"{_row_label(companion, i)}: run {run!r} appears twice")
        out[run] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
    return out


class TableImporter:
    """Long or wide CSV/Parquet tables (module docstring)."""

    kind = "table"
    description = "CSV or Parquet tables: long (run, step, metric, value) or wide (step + metrics)"
    options: Mapping[str, str] = {}
    version = "1"

    def can_open(self, source: Path) -> bool:
        source = Path(source)
        if source.is_file():
            return source.suffix.lower() in SUFFIXES
        return source.is_dir() and any(True for _ in _files(source))

    def read_runs(self, source: Path, options: Mapping[str, Any]) -> Iterator[ImportedRun]:
        source = Path(source)
        files = _files(source)
        if not files:
            raise ValueError(f"{source}: no .csv or .parquet table found")
        for path in files:
            frame = _read(path)
            name = (
                path.stem
                if source.is_file()
                else path.relative_to(source).with_suffix("").as_posix()
            )
            long = {"metric", "value"} <= set(frame.columns)
            extra = _companion_config(path)
            runs = _long_runs(frame, path, name) if long else _wide_runs(frame, path, name)
            if not extra:
                yield from runs
                continue
            # with a config table: its runs in its order (those that logged nothing included:
            # the pending runs of an export), then any it does not list
            companion = str(path.with_name(f"{path.stem}{CONFIG_INFIX}{path.suffix}"))
            logged = {run.name: run for run in runs}
            for run_name in [*extra, *(r for r in logged if r not in extra)]:
                run = logged.get(run_name, ImportedRun(run_name, {}, {}, sources=(str(path),)))
                config = {**extra.get(run_name, {}), **run.config}
                sources = (*run.sources, companion) if run_name in extra else run.sources
                yield ImportedRun(run.name, config, run.scalars, run.histograms, sources)


IMPORTER = TableImporter()
