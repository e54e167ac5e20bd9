"""Write :class:`~cdsanalysis.importers.base.ImportedRun` records as a schema-valid run store.

Every importer yields runs; this module alone touches Zarr. It

- maps metric names to the schema's (:mod:`cdsanalysis.importers.mapping`: the default table,
  ``--map``, ``--ignore``); an unknown metric is an error naming it, its file and the fix;
- resolves each run's configuration: the source's own config, then a path template, then the
  sidecar YAML (its top-level keys for every run, its ``runs: {NAME: {...}}`` per run), then
  ``--set`` (each later one wins); the schema's ``task``, ``model``, ``n_samples`` and ``seed``
  are required, and a field that some runs set must be set by all (a swept field);
- lays each run's logged steps onto the dense ``step`` axis with NaN between, chunk by chunk as
  the runs arrive: only chunks holding a measurement are written (the arrays' fill value is
  NaN, so an unwritten chunk reads as "not measured"), and memory holds one run's series and
  at most :data:`WRITE_BUFFER_BYTES` of chunks of consecutive runs, never runs x steps;
- writes the run configuration, state and provenance attributes at the end and validates the
  result, all in a temporary directory beside the target that is renamed onto it (as
  ``cds-run`` creates stores): an interrupted or failed import leaves nothing at ``--out``.

Imported runs are ``done`` with ``steps_done = steps_planned =`` their last logged step unless
the source (or ``--set``) says otherwise (``status``, ``steps_done``, ``steps_planned``).
Schema fields the source does not give (``width``, ``depth``, ``heads``: 0; ``lr``,
``weight_decay``, ``alpha``: NaN) are stored as unknown; ``eval_every`` is the smallest gap
between the steps at which a test metric was logged (1 without one).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import schemas
from cdsanalysis.importers.base import HistogramSeries, ImportedRun, ScalarSeries
from cdsanalysis.importers.mapping import SCALAR_METRICS, MetricNames, PathTemplate, coerce
from cdsanalysis.validate import StoreValidationError, validate_store

#: Steps per chunk of the per-step metrics (as the runner's upper bound): an imported run of
#: 700,000 steps logged every 1,000 writes 70 chunks of 10,000 steps, not one per step.
STEP_CHUNK = 10_000
#: Bytes of metric blocks held across runs before they go to Zarr. Blocks of consecutive runs
#: in one step chunk are written by one call (one round trip to Zarr's I/O thread instead of one
#: per run and metric: the writer's main cost at 10k steps per run, see BENCHMARKS.md), and
#: memory stays bounded whatever the number of runs or steps.
WRITE_BUFFER_BYTES = 2 * 2**20
#: Runs per chunk of the run configuration (as the runner).
CONFIG_RUN_CHUNK = 4096
#: Bins of the histogram grid when the imported histograms do not share one set of edges.
HISTOGRAM_BINS = 64

#: Configuration every run must have (the analyses group and select by them).
REQUIRED_FIELDS = ("task", "model", "n_samples", "seed")
#: Optional schema configuration, stored as "unknown" when no run gives it.
UNKNOWN_CONFIG: dict[str, Any] = {
    "width": 0,
    "depth": 0,
    "heads": 0,
    "lr": np.nan,
    "weight_decay": np.nan,
    "alpha": np.nan,
}
#: Configuration keys that set the run's state rather than a coordinate.
STATE_FIELDS = ("status", "steps_done", "steps_planned", "failure")
#: Schema variables a configuration key may not become (they are computed or per-step).
_RESERVED = {
    name
    for name, spec in schemas.load_schema()["variables"].items()
    if spec["role"] not in ("run_config",)
} | {"spec_json", "eval_every", "steps_planned"}

_STATUS = schemas.status_codes()
_GROUPS = schemas.parameter_groups()


class ImportInputError(ValueError):
    """Input that cannot be imported as it is; the message names the file, run or field and the
    fix. (A ValueError, so callers catch both this and the importers' ValueErrors.)"""


@dataclass(frozen=True)
class ImportOptions:
    """How an import maps names and finds configuration (the CLI's options).

    Parameters
    ----------
    metric_map
        ``--map``: source metric name -> schema metric (overrides the default table).
    ignore
        ``--ignore``: shell patterns of source metrics to drop.
    path_template
        ``--path-template``: configuration read from each run's path.
    sidecar
        ``--config``: the parsed sidecar YAML (top-level keys for every run; ``runs: {NAME:
        {...}}`` per run).
    set_values
        ``--set``: field -> value for every run (typed: ints as ints).
    step_offset
        Added to every imported step (``1`` for a source that counts steps from 0 and logs the
        initialisation as step 0; the schema's step 1 is the initialisation).
    """

    metric_map: Mapping[str, str] = field(default_factory=dict)
    ignore: Sequence[str] = ()
    path_template: str | None = None
    sidecar: Mapping[str, Any] = field(default_factory=dict)
    set_values: Mapping[str, Any] = field(default_factory=dict)
    step_offset: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.step_offset, int) or self.step_offset < 0:
            raise ValueError(f"step_offset must be an int >= 0, got {self.step_offset!r}")
        if self.sidecar and not isinstance(self.sidecar, Mapping):
            raise ValueError("the sidecar config must be a mapping of field: value")
        runs = self.sidecar.get("runs", {}) if self.sidecar else {}
        if not isinstance(runs, Mapping):
            raise ValueError("the sidecar config's 'runs' must map run names to mappings")


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote: ``store``, ``kind``, ``runs`` (count), ``steps`` (length of the
    step axis), ``metrics`` (schema names filled), ``points`` (measurements written)."""

    store: str
    kind: str
    runs: int
    steps: int
    metrics: tuple[str, ...]
    points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "kind": self.kind,
            "runs": self.runs,
            "steps": self.steps,
            "metrics": list(self.metrics),
            "points": self.points,
        }


def _where(run: ImportedRun) -> str:
    files = ", ".join(run.sources[:2]) + (" ..." if len(run.sources) > 2 else "")
    return f"run {run.name!r}" + (f" ({files})" if files else "")


def _dedupe(series: ScalarSeries, metric: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps (offset applied, sorted, unique) and values; identical repeats are dropped,
    conflicting ones are an error naming the series' file."""
    steps = np.asarray(series.steps, dtype=np.int64) + offset
    values = np.asarray(series.values, dtype=np.float64)
    if len(steps) and steps.min() < 1:
        bad = int(steps.min() - offset)
        raise ImportInputError(
            f"{series.where}: metric {metric!r} has step {bad}; run-store steps start at 1 (step "
            "1 is the initialisation): for a source counting from 0, pass --step-offset 1"
        )
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    repeat = np.flatnonzero(np.diff(steps) == 0)
    if len(repeat):
        same = (values[repeat] == values[repeat + 1]) | (
            np.isnan(values[repeat]) & np.isnan(values[repeat + 1])
        )
        if not same.all():
            i = repeat[np.flatnonzero(~same)[0]]
            raise ImportInputError(
                f"{series.where}: metric {metric!r} has two different values at step "
                f"{int(steps[i]) - offset} ({values[i]!r} and {values[i + 1]!r}); keep one "
                "(a resumed run logged twice?) and import again"
            )
        keep = np.ones(len(steps), dtype=bool)
        keep[repeat + 1] = False
        steps, values = steps[keep], values[keep]
    return steps, values


def _mapped_series(
    run: ImportedRun, names: MetricNames, offset: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The run's series under their schema names; errors name the metric, file and the fix."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    came_from: dict[str, str] = {}
    for source_name, series in run.scalars.items():
        try:
            target = names.target(source_name)
        except KeyError:
            raise ImportInputError(
                f"{series.where}: metric {source_name!r} has no run-store name; map it with "
                f"--map '{source_name}=SCHEMA_NAME' (SCHEMA_NAME one of "
                f"{', '.join(SCALAR_METRICS)} or param_norm/GROUP) or drop it with "
                f"--ignore '{source_name}'"
            ) from None
        if target is None:
            continue
        if target in out:
            raise ImportInputError(
                f"{_where(run)}: metrics {came_from[target]!r} and {source_name!r} both map to "
                f"{target!r}; keep one with --ignore"
            )
        came_from[target] = source_name
        out[target] = _dedupe(series, source_name, offset)
    return out


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (config read from tables arrives as numpy types)."""
    return value.item() if isinstance(value, np.generic) else value


def resolve_config(run: ImportedRun, options: ImportOptions) -> dict[str, Any]:
    """The run's configuration: source config < path template < sidecar < sidecar ``runs:`` <
    ``--set``."""
    config = {str(k): _plain(v) for k, v in run.config.items()}
    if options.path_template:
        template = PathTemplate(options.path_template)
        # a file's path without its suffix first: 'runs/gpt_2000_0.log' gives seed 0
        stems = [str(Path(f).with_suffix("")) for f in run.sources if Path(f).suffix]
        found = template.match([run.name, *stems, *run.sources])
        if found is None:
            raise ImportInputError(
                f"{_where(run)}: --path-template {options.path_template!r} matches neither the "
                "run's name nor its files"
            )
        config.update(found)
    sidecar = dict(options.sidecar or {})
    per_run = sidecar.pop("runs", {}) or {}
    config.update(sidecar)
    config.update(per_run.get(run.name, {}) or {})
    config.update(options.set_values)
    return config


def _fix_hint(field_name: str) -> str:
    return (
        f"give it in a sidecar YAML (--config, '{field_name}: VALUE' or per run under 'runs:'), "
        f"a path template (--path-template 'runs/{{model}}_{{n_samples}}_{{seed}}'), or for "
        f"every run with --set {field_name}=VALUE"
    )


def _typed(value: Any, dtype: str, where: str, field_name: str) -> Any:
    value = coerce(value) if isinstance(value, str) and dtype != schemas.STRING_DTYPE else value
    try:
        if dtype == schemas.STRING_DTYPE:
            return str(value)
        if np.dtype(dtype).kind == "i":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise ImportInputError(
            f"{where}: {field_name}={value!r} is not a valid {dtype} (the run-store schema's type)"
        ) from None


@dataclass
class _RunRecord:
    """What is kept of a run after its metrics are written: configuration and state."""

    name: str
    config: dict[str, Any]
    last_step: int
    eval_every: int
    where: str
    sources: tuple[str, ...]
    histograms: Mapping[str, HistogramSeries]


class _Store:
    """The temporary store being written: metric arrays grown run by run."""

    def __init__(self, path: Path):
        self.path = path
        self.root = zarr.open_group(str(path), mode="w-", zarr_format=3)
        self.schema = schemas.load_schema()
        self.arrays: dict[str, zarr.Array] = {}
        for name in (*SCALAR_METRICS, "param_norm"):
            spec = self.schema["variables"][name]
            dims = spec["dims"]
            shape = tuple(0 if d in ("run", "step") else len(_GROUPS) for d in dims)
            chunks = tuple({"run": 1, "step": STEP_CHUNK}.get(d, len(_GROUPS)) for d in dims)
            self.arrays[name] = self.root.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=spec["dtype"],
                fill_value=np.nan,
                dimension_names=dims,
                attributes={k: spec[k] for k in ("units", "description")},
            )
        self.n_runs = 0
        self.n_steps = 0
        self.capacity = 0
        # (metric, first step of a chunk - 1) -> [(run index, block)], runs in increasing order
        self.pending: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
        self.pending_bytes = 0

    def grow(self, n_runs: int, n_steps: int) -> None:
        """Make room for ``n_runs`` runs of ``n_steps`` steps (metadata only: chunks already
        written keep their place). Room for runs doubles, so that a thousand runs rewrite each
        array's metadata a dozen times, not a thousand; :meth:`fit` trims it at the end."""
        runs = self.capacity if n_runs <= self.capacity else max(n_runs, 2 * self.capacity)
        self.n_runs, self.n_steps = n_runs, max(self.n_steps, n_steps)
        self._resize(runs)

    def fit(self, n_runs: int, n_steps: int) -> None:
        """Write what is buffered; shape every metric array to exactly ``n_runs`` x ``n_steps``."""
        self.flush()
        self.n_runs, self.n_steps = n_runs, n_steps
        self._resize(n_runs)

    def _resize(self, runs: int) -> None:
        for array in self.arrays.values():
            shape = (runs, self.n_steps, *array.shape[2:])
            if array.shape != shape:
                array.resize(shape)
        self.capacity = runs

    def add_run(self, run_index: int, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Lay one run's series (schema names, 1-based steps) into blocks of one step chunk
        each and buffer them; chunks without a measurement get no block. ``param_norm/GROUP``
        series share their chunk's block (one column per group)."""
        blocks: dict[tuple[str, int], np.ndarray] = {}
        for target, (steps, values) in series.items():
            if not len(steps):
                continue
            group = None
            name = target
            if target.startswith("param_norm/"):
                name, group = "param_norm", _GROUPS.index(target.split("/", 1)[1])
            chunk_of = (steps - 1) // STEP_CHUNK
            bounds = np.flatnonzero(np.diff(chunk_of)) + 1
            for part_steps, part_values in zip(
                np.split(steps, bounds), np.split(values, bounds), strict=True
            ):
                lo = int((part_steps[0] - 1) // STEP_CHUNK * STEP_CHUNK)
                block = blocks.get((name, lo))
                if block is None:
                    width = min(lo + STEP_CHUNK, self.n_steps) - lo
                    shape = (width,) if group is None else (width, len(_GROUPS))
                    block = blocks[(name, lo)] = np.full(shape, np.nan, dtype=np.float32)
                if group is None:
                    block[part_steps - 1 - lo] = part_values
                else:
                    block[part_steps - 1 - lo, group] = part_values
        for key, block in blocks.items():
            self.pending.setdefault(key, []).append((run_index, block))
            self.pending_bytes += block.nbytes
        if self.pending_bytes >= WRITE_BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered blocks: per metric and step chunk, one call for the runs buffered.

        Runs in between without a block there are NaN rows, which Zarr does not store (its
        ``write_empty_chunks`` is off: a chunk of fill values is not written), so only chunks
        holding a measurement exist, as when writing run by run.
        """
        for (name, lo), rows in self.pending.items():
            first, last = rows[0][0], rows[-1][0]
            width = max(block.shape[0] for _, block in rows)
            batch = np.full((last - first + 1, width, *rows[0][1].shape[1:]), np.nan, np.float32)
            for index, block in rows:
                batch[index - first, : block.shape[0]] = block
            self.arrays[name][first : last + 1, lo : lo + width] = batch
        self.pending.clear()
        self.pending_bytes = 0


def _histogram_grid(records: Sequence[_RunRecord]) -> tuple[np.ndarray, list[int], list[str]]:
    """Bin edges, histogram steps and groups shared by every run's histograms."""
    all_edges = [
        np.asarray(e, dtype=np.float64)
        for r in records
        for h in r.histograms.values()
        for e in h.edges
    ]
    steps = sorted({int(s) for r in records for h in r.histograms.values() for s in h.steps})
    groups = sorted({g for r in records for g in r.histograms})
    if not all_edges:
        return np.array([0.0, 1.0]), steps, groups
    first = all_edges[0]
    if all(len(e) == len(first) and np.array_equal(e, first) for e in all_edges):
        return first, steps, groups
    low = min(float(e[0]) for e in all_edges)
    high = max(float(e[-1]) for e in all_edges)
    return np.linspace(low, high, HISTOGRAM_BINS + 1), steps, groups


def rebin(edges: np.ndarray, counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Counts over ``edges`` redistributed onto the bins of ``target``, each source bucket's
    count spread uniformly over its width (a zero-width bucket goes to the bin holding it)."""
    out = np.zeros(len(target) - 1)
    for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
        if hi <= lo:
            i = int(np.clip(np.searchsorted(target, lo, side="right") - 1, 0, len(out) - 1))
            out[i] += count
            continue
        overlap = np.clip(np.minimum(target[1:], hi) - np.maximum(target[:-1], lo), 0, None)
        out += count * overlap / (hi - lo)
    return out


def _eval_every(series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> int:
    gaps = [
        int(np.diff(series[m][0]).min())
        for m in ("test_accuracy", "test_loss")
        if m in series and len(series[m][0]) > 1
    ]
    return min(gaps) if gaps else 1


def _run_config_arrays(
    records: Sequence[_RunRecord],
) -> tuple[dict[str, tuple[str, list[Any]]], list[str]]:
    """name -> (dtype, column) of every run configuration variable and extra coordinate, and
    each run's spec_json. Raises naming the run and field for anything missing."""
    schema = schemas.load_schema()
    known_extra = schemas.known_extra_coordinates()
    keys = {k for r in records for k in r.config} - set(STATE_FIELDS) - {"spec_json"}
    for record in records:
        for name in REQUIRED_FIELDS:
            if name not in record.config:
                raise ImportInputError(
                    f"{record.where}: no value for {name!r}, which the run-store schema "
                    f"requires: {_fix_hint(name)}"
                )
        for name in sorted(keys - set(record.config)):
            other = next(r for r in records if name in r.config)
            raise ImportInputError(
                f"{record.where}: no value for {name!r}, which other runs set (e.g. run "
                f"{other.name!r}: {other.config[name]!r}): {_fix_hint(name)}"
            )
    columns: dict[str, tuple[str, list[Any]]] = {}
    for name in sorted(keys | set(UNKNOWN_CONFIG)):
        if name in _RESERVED:
            continue  # kept in spec_json only
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            continue  # not a valid variable name: kept in spec_json only
        spec = schema["variables"].get(name) or known_extra.get(name)
        if name not in keys:
            columns[name] = (spec["dtype"], [UNKNOWN_CONFIG[name]] * len(records))
            continue
        raw = [r.config[name] for r in records]
        if any(isinstance(v, (Mapping, list, tuple)) for v in raw):
            continue  # nested: kept in spec_json only
        if spec is not None:
            dtype = spec["dtype"]
        elif all(isinstance(v, bool) for v in raw):
            dtype = "bool"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            dtype = "int64"
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
            dtype = "float64"
        else:
            dtype = schemas.STRING_DTYPE
        if dtype == "bool":
            columns[name] = (dtype, raw)
            continue
        columns[name] = (
            dtype,
            [_typed(v, dtype, r.where, name) for v, r in zip(raw, records, strict=True)],
        )
    spec_texts = []
    for record in records:
        base = record.config.get("spec_json")
        spec: dict[str, Any] = {}
        if isinstance(base, str) and base:
            with contextlib.suppress(ValueError):
                spec = dict(json.loads(base))
        spec.update({k: v for k, v in record.config.items() if k != "spec_json"})
        task = record.config["task"]
        task_spec = dict(spec.get("task")) if isinstance(spec.get("task"), Mapping) else {}
        task_spec["name"] = str(task) if not isinstance(task, Mapping) else task.get("name")
        if "p" in record.config:
            task_spec["p"] = record.config["p"]
        spec["task"] = task_spec
        spec["imported"] = {"name": record.name, "sources": list(record.sources)}
        spec_texts.append(json.dumps(spec, sort_keys=True, default=_json_default))
    return columns, spec_texts


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _state(record: _RunRecord) -> tuple[int, int, int]:
    """(status code, steps_done, steps_planned) of a run."""
    cfg = record.config
    status = str(cfg.get("status", "done"))
    if status not in _STATUS:
        raise ImportInputError(
            f"{record.where}: status {status!r} is not one of {', '.join(_STATUS)}"
        )
    done = _typed(cfg.get("steps_done", record.last_step), "int64", record.where, "steps_done")
    planned = _typed(
        cfg.get("steps_planned", max(done, record.last_step)),
        "int64",
        record.where,
        "steps_planned",
    )
    if planned < 1:
        raise ImportInputError(
            f"{record.where}: no step was logged and no steps_planned given: "
            + _fix_hint("steps_planned")
        )
    if status == "done" and done != planned:
        raise ImportInputError(
            f"{record.where}: marked done, but steps_done={done} differs from steps_planned="
            f"{planned}; give the run's status (e.g. --set status=failed) or its steps_planned"
        )
    if record.last_step > done and status not in ("running", "failed"):
        raise ImportInputError(
            f"{record.where}: logs step {record.last_step}, beyond steps_done={done}"
        )
    return _STATUS[status], done, planned


def write_store(
    runs: Iterable[ImportedRun],
    out: str | os.PathLike,
    *,
    kind: str,
    source: str | os.PathLike,
    options: ImportOptions | None = None,
    importer_version: str = "",
) -> ImportSummary:
    """Write the runs as a new run store at ``out``, atomically; return what was written.

    Raises
    ------
    ImportInputError
        Naming the file, run, metric or field for input that cannot be imported (nothing is
        left at ``out``, nor a temporary directory beside it).
    FileExistsError
        When ``out`` exists.
    """
    options = options or ImportOptions()
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --out or remove it first")
    names = MetricNames(options.metric_map, options.ignore)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        store = _Store(tmp)
        records: list[_RunRecord] = []
        filled: set[str] = set()
        points = 0
        seen: dict[str, str] = {}
        for run in runs:
            where = _where(run)
            if run.name in seen:
                raise ImportInputError(
                    f"{where}: a second run named {run.name!r} (the first: {seen[run.name]}); "
                    "run names become the store's run ids and must be unique"
                )
            seen[run.name] = where
            series = _mapped_series(run, names, options.step_offset)
            last = max((int(s[-1]) for s, _ in series.values() if len(s)), default=0)
            index = len(records)
            store.grow(index + 1, last)
            store.add_run(index, series)
            for target, (steps, _values) in series.items():
                if len(steps):
                    filled.add("param_norm" if target.startswith("param_norm/") else target)
                    points += len(steps)
            records.append(
                _RunRecord(
                    name=run.name,
                    config=resolve_config(run, options),
                    last_step=last,
                    eval_every=_eval_every(series),
                    where=where,
                    sources=tuple(run.sources),
                    histograms=run.histograms,
                )
            )
        if not records:
            raise ImportInputError(f"{source}: no runs found")
        states = [_state(r) for r in records]
        n_steps = max(store.n_steps, max(p for _, _, p in states))
        store.fit(len(records), n_steps)
        _finish(store, records, states, kind, str(source), options, importer_version)
        validate_store(str(tmp))
        try:
            os.rename(tmp, out)
        except OSError as exc:
            raise FileExistsError(f"{out} could not be created ({exc})") from None
    except StoreValidationError as exc:  # a bug here, not the user's input: say so
        raise RuntimeError(f"the imported store does not validate (please report): {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportSummary(
        store=str(out),
        kind=kind,
        runs=len(records),
        steps=n_steps,
        metrics=tuple(sorted(filled)),
        points=points,
    )


def _finish(
    store: _Store,
    records: Sequence[_RunRecord],
    states: Sequence[tuple[int, int, int]],
    kind: str,
    source: str,
    options: ImportOptions,
    importer_version: str,
) -> None:
    """Coordinates, run configuration, state, histograms and attributes."""
    package_version = _package_version()
    root, schema = store.root, store.schema
    n_runs = len(records)
    variables = schema["variables"]
    columns, spec_texts = _run_config_arrays(records)
    eval_every = [int(r.config.get("eval_every", r.eval_every)) for r in records]
    edges, hist_steps, hist_groups = _histogram_grid(records)
    hist_steps = [s + options.step_offset for s in hist_steps]
    if hist_steps and (hist_steps[0] < 1 or hist_steps[-1] > store.n_steps):
        raise ImportInputError(
            f"{source}: histogram steps {hist_steps[0]}..{hist_steps[-1]} lie outside the "
            f"logged steps 1..{store.n_steps}"
        )
    values: dict[str, Any] = {
        "step": np.arange(1, store.n_steps + 1, dtype=np.int64),
        "run": np.array([r.name for r in records], dtype=object),
        "group": np.array(_GROUPS, dtype=object),
        "hist_step": np.asarray(hist_steps, dtype=np.int64),
        "hist_group": np.array(hist_groups, dtype=object),
        "bin_edge": edges,
        "spec_json": np.array(spec_texts, dtype=object),
        "status": np.array([s for s, _, _ in states], dtype=np.int8),
        "steps_done": np.array([d for _, d, _ in states], dtype=np.int64),
        "steps_planned": np.array([p for _, _, p in states], dtype=np.int64),
        "eval_every": np.array(eval_every, dtype=np.int64),
        "failure": np.array([str(r.config.get("failure", "")) for r in records], dtype=object),
    }
    for name, (dtype, column) in columns.items():
        if name in variables:
            values[name] = (
                np.array(column, dtype=object)
                if dtype == schemas.STRING_DTYPE
                else np.array(column, dtype=dtype)
            )
    sizes = {
        "run": n_runs,
        "step": store.n_steps,
        "group": len(_GROUPS),
        "hist_step": len(hist_steps),
        "hist_group": len(hist_groups),
        "bin": len(edges) - 1,
        "bin_edge": len(edges),
    }
    for name, spec in variables.items():
        if name in store.arrays:
            continue
        dims = spec["dims"]
        written_once = spec["role"] in schemas.WRITTEN_ONCE_ROLES
        chunks = tuple(
            (min(n_runs, CONFIG_RUN_CHUNK) if written_once else 1)
            if d == "run"
            else max(sizes[d], 1)
            for d in dims
        )
        string = spec["dtype"] == schemas.STRING_DTYPE
        fill: Any = "" if string else {"NaN": np.nan, "none": 0}.get(spec["fill"])
        if fill is None:
            fill = int(spec["fill"])
        array = root.create_array(
            name,
            shape=tuple(sizes[d] for d in dims),
            chunks=chunks,
            dtype=str if string else spec["dtype"],
            fill_value=fill,
            dimension_names=dims,
            attributes={
                k: spec[k]
                for k in ("units", "description", "flag_values", "flag_meanings")
                if k in spec
            },
        )
        if name in values:
            array[...] = values[name]
    _write_histograms(root, records, hist_steps, hist_groups, edges, options.step_offset)
    known = schemas.known_extra_coordinates()
    for name, (dtype, column) in columns.items():
        if name in variables:
            continue
        string = dtype == schemas.STRING_DTYPE
        array = root.create_array(
            name,
            shape=(n_runs,),
            chunks=(min(n_runs, CONFIG_RUN_CHUNK),),
            dtype=str if string else dtype,
            fill_value="" if string else 0,
            dimension_names=["run"],
            attributes={
                "role": "run_config",
                **{k: known[name][k] for k in ("units", "description") if name in known},
            },
        )
        array[...] = np.array(column, dtype=object if string else dtype)
    root.attrs.update(
        {
            "schema_name": schema["schema_name"],
            "schema_version": schema["schema_version"],
            "grid_yaml": _import_record(kind, source, options),
            "grid_name": f"imported-{kind}",
            "created_by": f"cds {package_version} (cds-analyze import {kind})",
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "import_kind": kind,
            "import_source": source,
            "importer_version": importer_version or package_version,
            "import_sources_sha256": hashlib.sha256(
                "\n".join(f for r in records for f in r.sources).encode()
            ).hexdigest()[:16],
        }
    )


def _write_histograms(
    root: zarr.Group,
    records: Sequence[_RunRecord],
    hist_steps: Sequence[int],
    hist_groups: Sequence[str],
    edges: np.ndarray,
    offset: int,
) -> None:
    hist = root["weight_histogram"]
    outside = root["weight_histogram_outside"]
    step_index = {s: i for i, s in enumerate(hist_steps)}
    for run_index, record in enumerate(records):
        for group_index, group in enumerate(hist_groups):
            series = record.histograms.get(group)
            if series is None:
                continue
            block = np.full((len(hist_steps), len(edges) - 1), np.nan, dtype=np.float32)
            beyond = np.full(len(hist_steps), np.nan, dtype=np.float32)
            for step, e, c in zip(series.steps, series.edges, series.counts, strict=True):
                e, c = np.asarray(e, dtype=np.float64), np.asarray(c, dtype=np.float64)
                row = step_index[int(step) + offset]
                block[row] = rebin(e, c, edges)
                beyond[row] = c.sum() - block[row].sum()
            hist[run_index, :, group_index, :] = block
            outside[run_index, :, group_index] = np.clip(beyond, 0, None)


def _package_version() -> str:
    try:
        return importlib.metadata.version("cds")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "0+unknown"


def _import_record(kind: str, source: str, options: ImportOptions) -> str:
    """The store's ``grid_yaml``: how it was made (an imported store has no grid file)."""
    record = {
        "imported": {
            "kind": kind,
            "source": source,
            "metric_map": dict(options.metric_map),
            "ignore": list(options.ignore),
            "path_template": options.path_template,
            "sidecar": dict(options.sidecar or {}),
            "set": dict(options.set_values),
            "step_offset": options.step_offset,
        }
    }
    return "# not a grid: this store was imported by cds-analyze import\n" + json.dumps(
        record, indent=2, sort_keys=True, default=_json_default
    )
