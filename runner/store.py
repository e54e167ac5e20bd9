"""Writing run stores (schema v1): pre-allocation, block writes, run state, locks, checkpoints.

The store is created from the schema file itself (``schemas/run_store_v1.json``) so that writer
and reader cannot drift. This module does not import torch: analysis tests use it to build
synthetic stores.

Layout on disk::

    runs.zarr/                 Zarr v3 group, opens as one xarray.Dataset
      zarr.json, <variables>/  one chunk per run along 'run'
      _state/                  an (empty) Zarr group that holds non-array files
        checkpoints/<run>.pt   model + optimiser state at the last flushed step
        locks/<run>.lock       local stores: held (flock) by the process that trains the run
        leases/<run>.json      fsspec stores: holder and expiry of the run's timed lease
        run_id_migration.json  stores re-keyed from an older run-id scheme: old id -> new id
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import schemas
from runner import migrate
from runner.leases import DEFAULT_LEASE_TTL, FlockLease, Lease, TimedLease, holder_id
from runner.run_identity import LEGACY_RUN_ID_SCHEME, RUN_ID_SCHEME, SCHEME_ATTRIBUTE
from runner.spec import PARAM_GROUPS, RunSpec, StoreSettings
from runner.storage import LocationError, StoreLocation, parse_location

#: Upper bound on the chunk length along 'step' (steps per chunk).
MAX_STEP_CHUNK = 10_000
#: Histogram snapshots per chunk along 'hist_step'.
HIST_STEP_CHUNK = 100
#: Runs per chunk of the variables written only when the store is created (the run
#: configuration: ``schemas.WRITTEN_ONCE_ROLES``, and the extra run coordinates).
CONFIG_RUN_CHUNK = 4096

STATUS = schemas.status_codes()
_STRING_FILL = ""


class StoreError(RuntimeError):
    """A store that cannot be created or written as asked; the message says why and what to do."""


def histogram_steps(total_steps: int, every_steps: int) -> np.ndarray:
    """Steps at which histograms are taken: step 1 (the initialisation), then every k-th step."""
    return np.unique(np.r_[1, np.arange(every_steps, total_steps + 1, every_steps)]).astype(
        np.int64
    )


def _dtype(spec: str) -> Any:
    return str if spec == schemas.STRING_DTYPE else np.dtype(spec)


def _fill(spec: dict) -> Any:
    """Zarr fill value of a schema variable: what an unwritten chunk reads as."""
    if spec["dtype"] == schemas.STRING_DTYPE:
        return _STRING_FILL
    if spec["fill"] == "NaN":
        return np.nan
    return 0 if spec["fill"] == "none" else int(spec["fill"])


def _coordinate_dtype(values: Sequence[Any]) -> Any:
    if all(isinstance(v, bool) for v in values):
        return np.dtype(bool)
    if all(isinstance(v, int) for v in values):
        return np.dtype("int64")
    if all(isinstance(v, (int, float)) for v in values):
        return np.dtype("float64")
    return str


def _units_and_description(spec: dict | None) -> dict[str, str]:
    return {} if spec is None else {k: spec[k] for k in ("units", "description")}


@dataclass(frozen=True)
class StoreLayout:
    """Sizes of every dimension of a store, derived from the runs and shared settings."""

    n_runs: int
    n_steps: int
    hist_steps: np.ndarray
    hist_groups: tuple[str, ...]
    bin_edges: np.ndarray

    @classmethod
    def for_grid(cls, runs: Sequence[RunSpec], settings: StoreSettings) -> StoreLayout:
        n_steps = max(r.steps for r in runs)
        h = settings.histogram
        return cls(
            n_runs=len(runs),
            n_steps=n_steps,
            hist_steps=histogram_steps(n_steps, h.every),
            hist_groups=tuple(h.groups),
            bin_edges=np.linspace(h.range[0], h.range[1], h.bins + 1),
        )

    def sizes(self) -> dict[str, int]:
        return {
            "run": self.n_runs,
            "step": self.n_steps,
            "group": len(PARAM_GROUPS),
            "hist_step": len(self.hist_steps),
            "hist_group": len(self.hist_groups),
            "bin": len(self.bin_edges) - 1,
            "bin_edge": len(self.bin_edges),
        }

    def chunks(self, dims: Sequence[str], written_once: bool = False) -> tuple[int, ...]:
        """Chunk shape of a variable over ``dims``. What training writes never puts two runs
        in one chunk (independent writers need no locks); the run configuration, written once
        when the store is created, takes up to ``CONFIG_RUN_CHUNK`` runs per chunk, so a reader
        opens a few files per coordinate instead of one per run."""
        sizes = self.sizes()
        per_dim = {
            "run": min(self.n_runs, CONFIG_RUN_CHUNK) if written_once else 1,
            "step": min(self.n_steps, MAX_STEP_CHUNK),
            "hist_step": min(sizes["hist_step"], HIST_STEP_CHUNK),
        }
        return tuple(per_dim.get(d, sizes[d]) for d in dims)


def _run_ids(runs: Sequence[RunSpec], id_scheme: int) -> list[str]:
    if id_scheme == RUN_ID_SCHEME:
        return [r.run_id for r in runs]
    if id_scheme == LEGACY_RUN_ID_SCHEME:
        return [r.legacy_run_id() for r in runs]
    raise ValueError(f"id_scheme {id_scheme}: give {RUN_ID_SCHEME} or {LEGACY_RUN_ID_SCHEME}")


def _write_new_store(
    path: Path,
    runs: Sequence[RunSpec],
    settings: StoreSettings,
    grid_text: str,
    id_scheme: int = RUN_ID_SCHEME,
) -> None:
    import runner

    layout = StoreLayout.for_grid(runs, settings)
    schema = schemas.load_schema()
    attributes = {
        "schema_name": schema["schema_name"],
        "schema_version": schema["schema_version"],
        "grid_yaml": grid_text,
        "grid_name": settings.name,
        "created_by": f"cds {runner.__version__}",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if id_scheme != LEGACY_RUN_ID_SCHEME:  # scheme-1 stores predate the attribute
        attributes[SCHEME_ATTRIBUTE] = id_scheme
    coords = [r.config_coordinates() for r in runs]
    attributes["coordinates"] = " ".join(_per_run_names(schema, coords[0]))
    root = zarr.open_group(str(path), mode="w-", zarr_format=3, attributes=attributes)
    sizes = layout.sizes()
    values: dict[str, Any] = {
        "step": np.arange(1, layout.n_steps + 1, dtype=np.int64),
        "run": np.array(_run_ids(runs, id_scheme), dtype=object),
        "group": np.array(PARAM_GROUPS, dtype=object),
        "hist_step": layout.hist_steps,
        "hist_group": np.array(layout.hist_groups, dtype=object),
        "bin_edge": layout.bin_edges,
        # A store of scheme 1 reproduced as such a version wrote it (its ids hash this text).
        "spec_json": np.array(
            [
                r.legacy_canonical_json()
                if id_scheme == LEGACY_RUN_ID_SCHEME
                else r.canonical_json()
                for r in runs
            ],
            dtype=object,
        ),
    }
    for name in coords[0]:
        column = [c[name] for c in coords]
        values[name] = np.array(column, dtype=object if _coordinate_dtype(column) is str else None)

    for name, spec in schema["variables"].items():
        dims = spec["dims"]
        attrs = _variable_attributes(spec)
        written_once = spec["role"] in schemas.WRITTEN_ONCE_ROLES
        array = root.create_array(
            name,
            shape=tuple(sizes[d] for d in dims),
            chunks=layout.chunks(dims, written_once),
            dtype=_dtype(spec["dtype"]),
            fill_value=_fill(spec),
            dimension_names=dims,
            attributes=attrs,
        )
        if name in values:
            array[...] = values.pop(name)
    # Extra run coordinates (allowed by the schema): configuration not named in it, with the
    # schema's dtype where it lists them (from the Python values otherwise: numpy scalars are
    # not ``int``, which once stored every integer coordinate as text).
    known = schemas.known_extra_coordinates()
    for name, column in values.items():
        if name in known:
            dtype = _dtype(known[name]["dtype"])
        else:
            dtype = _coordinate_dtype([c[name] for c in coords])
        array = root.create_array(
            name,
            shape=(len(runs),),
            chunks=layout.chunks(["run"], written_once=True),
            dtype=dtype,
            fill_value=_STRING_FILL if dtype is str else 0,
            dimension_names=["run"],
            attributes={"role": "run_config", **_units_and_description(known.get(name))},
        )
        array[...] = column if dtype is str else np.asarray(column, dtype=dtype)
    zarr.open_group(
        str(path / "_state"),
        mode="w-",
        zarr_format=3,
        attributes={"purpose": "checkpoints and locks of the runner; not data"},
    )
    (path / "_state" / "checkpoints").mkdir()
    (path / "_state" / "locks").mkdir()
    consolidate(str(path))


def _variable_attributes(spec: dict) -> dict[str, Any]:
    """The attributes of a schema variable in the store: units, description and, for
    ``status``, the CF flag attributes (``flag_meanings`` one blank-separated string, as CF
    requires; the schema JSON keeps it a list)."""
    attrs: dict[str, Any] = {k: spec[k] for k in ("units", "description") if k in spec}
    if "flag_values" in spec:
        attrs["flag_values"] = list(spec["flag_values"])
        attrs["flag_meanings"] = " ".join(spec["flag_meanings"])
    return attrs


def _per_run_names(schema: dict, extra: dict[str, Any]) -> list[str]:
    """Every per-run variable (configuration and state, the schema's and the extra run
    coordinates): what the root attribute ``coordinates`` names."""
    named = [
        name
        for name, spec in schema["variables"].items()
        if spec["dims"] == ["run"] and spec["role"] in ("run_config", "run_state")
    ]
    return [*named, *(name for name in extra if name not in named)]


def consolidate(store: Any) -> None:
    """Write the store's consolidated metadata (every array's metadata copied into the root
    ``zarr.json``), so that ``xarray.open_zarr`` opens it with one read and no warning.

    Only metadata is consolidated, never data: what training writes (metrics, ``status``,
    ``steps_done``) is always read from its own chunks, so a consolidation never hides a step
    or a run's state. It goes stale only when arrays or attributes change, which the runner
    does when it creates a store, adds the optional variables to an older one or re-keys its
    run ids; :meth:`RunStore.create_or_open` consolidates again after each. The runner and
    ``cdsanalysis`` themselves read the arrays' own metadata, never the consolidated copy."""
    with warnings.catch_warnings():
        # zarr: "consolidated metadata is not part of the Zarr v3 specification" (yet); xarray
        # and zarr-python read it, other readers ignore it and read the arrays' own metadata.
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(store)


def _needs_consolidation(root: zarr.Group, consolidated: zarr.Group) -> bool:
    """Whether the consolidated metadata (``consolidated``: the root opened through it) is
    missing or disagrees with the arrays and attributes really stored (``root``)."""
    if consolidated.metadata.consolidated_metadata is None:
        return True
    return sorted(root.array_keys()) != sorted(consolidated.array_keys()) or dict(
        root.attrs
    ) != dict(consolidated.attrs)


class RunStore:
    """A run store opened for writing by the runner.

    Parameters
    ----------
    location
        Local path, ``file://`` URL or fsspec URL (``memory://``, ``s3://``, ``gs://``).

    Raises
    ------
    StoreError
        When nothing usable is there; the message names the problem and the fix.
    """

    def __init__(self, location: str | os.PathLike | StoreLocation):
        self.location = location if isinstance(location, StoreLocation) else _parse(location)
        self.path = self.location.path if self.location.is_local else self.location.text
        text = self.location.text
        try:
            # The arrays' own metadata, never the consolidated copy (which may be stale).
            self.root = zarr.open_group(
                self.location.zarr_store(), mode="r+", zarr_format=3, use_consolidated=False
            )
        except (
            FileNotFoundError,
            zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError,
        ):
            raise StoreError(
                f"{text}: no run store here (no Zarr group); give the --out of a store written "
                "by cds-run, or a location that does not exist yet to create one"
            ) from None
        attrs = dict(self.root.attrs)
        if attrs.get("schema_name") != schemas.SCHEMA_NAME:
            raise StoreError(f"{text} is not a cds run store (no schema_name attribute)")
        if attrs.get("schema_version") != schemas.CURRENT_VERSION:
            raise StoreError(
                f"{text} has schema version {attrs.get('schema_version')!r}; this runner "
                f"writes version {schemas.CURRENT_VERSION}: write into a new store"
            )
        self._arrays: dict[str, zarr.Array] = {}
        #: Run-id scheme of the ``run`` coordinate (``runner.run_identity``).
        self.id_scheme: int = migrate.stored_scheme(attrs)
        #: The re-keying :meth:`create_or_open` did when it opened the store, if any.
        self.migration: migrate.RunIdMigration | None = None
        self.run_ids: list[str] = [str(r) for r in self.root["run"][...]]
        self.hist_steps: np.ndarray = self.root["hist_step"][...]
        self.hist_groups: list[str] = [str(g) for g in self.root["hist_group"][...]]
        self.bin_edges: np.ndarray = self.root["bin_edge"][...]
        self.n_steps = int(self.root["step"].shape[0])
        self._add_optional_variables()

    def _add_optional_variables(self) -> None:
        """Create the per-run and per-(run, step) variables the schema added after this store
        was written (each starts at its fill value: NaN, never measured), so older stores take
        every field the runner writes; one run per chunk, as everything training writes."""
        schema = schemas.load_schema()
        sizes = {"run": len(self.run_ids), "step": self.n_steps}
        for name in schemas.optional_variables():
            spec = schema["variables"][name]
            if name in self.root or spec["dims"] not in (["run"], ["run", "step"]):
                continue
            shape = tuple(sizes[d] for d in spec["dims"])
            with contextlib.suppress(zarr.errors.ContainsArrayError):  # another process won
                self.root.create_array(
                    name,
                    shape=shape,
                    chunks=(1, *(min(n, MAX_STEP_CHUNK) for n in shape[1:])),
                    dtype=_dtype(spec["dtype"]),
                    fill_value=_fill(spec),
                    dimension_names=spec["dims"],
                    attributes={"units": spec["units"], "description": spec["description"]},
                )

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def create_or_open(
        cls,
        location: str | os.PathLike | StoreLocation,
        runs: Sequence[RunSpec],
        settings: StoreSettings,
        grid_text: str,
        id_scheme: int = RUN_ID_SCHEME,
    ) -> RunStore:
        """Create the store for a grid, or open it if it already holds exactly this grid.

        Creation is atomic, so two processes started together on one store both end up writing
        into the same, complete store: a local store is built beside the target and renamed; an
        fsspec store is built in a local temporary directory and uploaded with its root
        ``zarr.json`` last, so that until the upload is complete there is no store to open.
        An existing store is validated against the schema first and refused, untouched, when
        it does not follow it. An existing store of this grid written under an older run-id
        scheme is re-keyed to the current one (:mod:`runner.migrate`; :attr:`migration` says so).

        ``id_scheme`` other than the current one writes (and expects) the ids of that scheme and
        never re-keys: it exists to reproduce stores written by earlier versions (tests, tools).
        """
        loc = location if isinstance(location, StoreLocation) else _parse(location)
        if loc.is_local and loc.path.exists() and not loc.path.is_dir():
            raise StoreError(f"{loc.text} exists and is not a directory; choose another --out")
        if not loc.exists("zarr.json") and not _has_entries(loc):
            if loc.is_local:
                path = loc.path
                tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
                try:
                    _write_new_store(tmp, runs, settings, grid_text, id_scheme)
                    # OSError: another process won the race; its store is used below.
                    with contextlib.suppress(OSError):
                        os.rename(tmp, path)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            else:
                _upload_new_store(loc, runs, settings, grid_text, id_scheme)
        elif not loc.is_local:
            _wait_for_upload(loc)
        recover_interrupted_append(loc)
        _validate_existing(loc)
        migration = None
        if id_scheme == RUN_ID_SCHEME:
            try:
                migration = migrate.upgrade_run_ids(loc, runs)
            except migrate.RunIdError as exc:
                raise StoreError(str(exc)) from None
        store = cls(loc)
        store.migration = migration
        store._check_matches(runs, settings, id_scheme)
        store._consolidate_if_stale()
        return store

    def _consolidate_if_stale(self) -> None:
        """Consolidate the store's metadata when it has none (stores written before the runner
        consolidated) or it no longer matches the arrays and attributes (optional variables
        just added, run ids re-keyed). Processes started together on one store find it current
        and write nothing; two that both consolidate write the same text, atomically."""
        store = self.location.zarr_store()
        consolidated = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=None)
        if _needs_consolidation(self.root, consolidated):
            consolidate(store)

    def _check_matches(
        self, runs: Sequence[RunSpec], settings: StoreSettings, id_scheme: int = RUN_ID_SCHEME
    ) -> None:
        wanted = _run_ids(runs, id_scheme)
        if wanted != self.run_ids:
            # A store of an older id scheme reaches here only when its specs are not this grid's.
            missing = (
                len(set(wanted) - set(self.run_ids))
                if self.id_scheme == id_scheme
                else ("all" if len(wanted) != len(self.run_ids) else "some")
            )
            superset = self.id_scheme == id_scheme and set(self.run_ids) < set(wanted)
            raise StoreError(
                f"{self.location.text} already exists and was created from a different grid "
                f"({missing} of this grid's {len(wanted)} runs are not in it, the store has "
                f"{len(self.run_ids)}); "
                + (
                    "this grid holds every run of the store: add the new ones with --extend"
                    if superset
                    else "write to another --out, or delete the store to start over"
                )
            )
        self._check_layout(runs, settings)
        if id_scheme == RUN_ID_SCHEME:
            self._check_stored_specs(runs)

    def _check_layout(self, runs: Sequence[RunSpec], settings: StoreSettings) -> None:
        layout = StoreLayout.for_grid(runs, settings)
        same = (
            np.array_equal(layout.hist_steps, self.hist_steps)
            and list(layout.hist_groups) == self.hist_groups
            and np.array_equal(layout.bin_edges, self.bin_edges)
        )
        if not same:
            raise StoreError(
                f"{self.location.text} was created with other histogram settings; keep "
                "'histogram' as it was when the store was created, or write to another --out"
            )

    def extend(self, runs: Sequence[RunSpec], settings: StoreSettings, grid_text: str) -> list:
        """``cds-run --extend``: add the runs of a grid that the store lacks (new sizes, seeds,
        models) and return the grid's runs in the store's order (the old runs first, as they
        are, then the new ones in the grid's order).

        The grid must hold every run already in the store (it only adds), fit its layout (at
        most its steps, the same histogram settings) and use the current run-id scheme. No
        other process may write the store meanwhile: a run whose lease a live process holds is
        refused, naming it (appending resizes every per-run array). The store's ``grid_yaml``
        becomes this grid's text. Nothing already trained is touched.
        """
        text = self.location.text
        _validate_existing(self.location)  # a damaged store is refused by name, not extended
        if self.id_scheme != RUN_ID_SCHEME:
            raise StoreError(
                f"{text}: its run ids use scheme {self.id_scheme}; run its own grid once "
                "without --extend (which upgrades them), then extend"
            )
        wanted = {r.run_id: r for r in runs}
        dropped = [run_id for run_id in self.run_ids if run_id not in wanted]
        if dropped:
            raise StoreError(
                f"{text}: --extend only adds runs, and {len(dropped)} of the store's runs are "
                f"not in this grid (e.g. {dropped[0]}); keep every list of the grid the store "
                "was created with and add values to it"
            )
        self._check_layout(runs, settings)
        for index, status in enumerate(self.root["status"][...]):
            if int(status) == STATUS["running"]:
                with self.run_lock(index) as free:
                    if not free:
                        raise StoreError(
                            f"{text}: run {index} ({self.run_ids[index]}) is being trained by "
                            "another process; extend the store when no cds-run writes it"
                        )
        stored = set(self.run_ids)
        new = [r for r in runs if r.run_id not in stored]
        if new:
            self.append_runs(new)
            self.root.attrs.update({"grid_yaml": grid_text})
            consolidate(self.location.zarr_store())
        return self.in_store_order(runs)

    def in_store_order(self, runs: Sequence[RunSpec]) -> list[RunSpec]:
        """``runs`` (all held by this store) sorted by their run index here."""
        order = {run_id: i for i, run_id in enumerate(self.run_ids)}
        return sorted(runs, key=lambda r: order[r.run_id])

    def _check_stored_specs(self, runs: Sequence[RunSpec]) -> None:
        """Each stored spec, read by this version, must still hash to its run's id. It does not
        when a default the run was trained with has changed since (the grid's id is unchanged,
        as the field is left out at its default, but the run would resume with another value):
        that is refused, naming the field, rather than mixed into one run."""
        texts = [str(t) for t in self.array("spec_json")[...]]
        for i, (text, run) in enumerate(zip(texts, runs, strict=True)):
            if text == run.canonical_json():
                continue  # the grid's own spec, every field as this version writes it
            try:
                stored = migrate.parse_stored_spec(text, i, self.location.text)
            except migrate.RunIdError as exc:
                raise StoreError(str(exc)) from None
            if stored.run_id == self.run_ids[i]:
                continue
            changed = _differences(stored.model_dump(mode="json"), run.model_dump(mode="json"))
            raise StoreError(
                f"{self.location.text}: run {i} ({self.run_ids[i]}) was trained with "
                f"{'; '.join(changed) or 'another spec'}, which this version of cds takes by "
                "default (a changed default); resuming would mix two configurations under one "
                "id: continue the store with the version that wrote it (its created_by "
                "attribute), or write to another --out"
            )

    # -- growing ------------------------------------------------------------------------------
    def append_runs(self, runs: Sequence[RunSpec]) -> list[int]:
        """Add ``runs`` at the end of the ``run`` dimension; return their indices.

        For writers that decide their runs as they go (``cds-run --search``): every variable
        along ``run`` is resized, the new runs' configuration written, and their per-step
        variables read as their fill (NaN, never measured) with status ``pending``. Runs
        already in the store (same id) are not added again; their existing indices are
        returned. The runs must fit the store's layout (at most its steps). Only one process
        may append at a time, and none may train meanwhile (the search appends between rounds):
        the configuration chunks span several runs. The append is journalled
        (``schemas.APPEND_JOURNAL``): one killed midway is rolled back by
        :func:`recover_interrupted_append` when a writer next opens the store.
        """
        index = {run_id: i for i, run_id in enumerate(self.run_ids)}
        new = list({r.run_id: r for r in runs if r.run_id not in index}.values())
        too_long = [r.run_id for r in new if r.steps > self.n_steps]
        if too_long:
            raise StoreError(
                f"{self.location.text}: runs {too_long} have more steps than the store's "
                f"{self.n_steps}; keep 'steps' as it was when the store was created"
            )
        if new:
            journal = json.dumps({"runs_before": len(self.run_ids), "holder": holder_id()})
            journal = journal.encode()
            self.location.write_bytes(journal, *schemas.APPEND_JOURNAL.split("/"))
            self._append(new)
            self.location.remove(*schemas.APPEND_JOURNAL.split("/"))
        index = {run_id: i for i, run_id in enumerate(self.run_ids)}
        return [index[r.run_id] for r in runs]

    def _append(self, runs: list[RunSpec]) -> None:
        first, count = len(self.run_ids), len(runs)
        coords = [r.config_coordinates() for r in runs]
        values: dict[str, Any] = {
            "run": [r.run_id for r in runs],
            "spec_json": [r.canonical_json() for r in runs],
            **{name: [c[name] for c in coords] for name in coords[0]},
        }
        names = [
            name
            for name, array in self.root.arrays()
            if tuple(array.metadata.dimension_names or ())[:1] == ("run",)
        ]
        # 'run' last: a reader that finds the coordinate grown finds every variable grown.
        for name in sorted(names, key=lambda n: n == "run"):
            array = self.root[name]
            array.resize((first + count, *array.shape[1:]))
            if name in values:
                column = values[name]
                if array.dtype.kind in ("T", "U", "O"):
                    array[first:] = np.array([str(v) for v in column], dtype=object)
                else:
                    array[first:] = np.asarray(column, dtype=array.dtype)
        self._arrays.clear()
        self.run_ids = [*self.run_ids, *values["run"]]

    # -- writing ------------------------------------------------------------------------------
    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = self.root[name]
        return self._arrays[name]

    def write_steps(self, run_index: int, first_step: int, block: dict[str, np.ndarray]) -> None:
        """Write per-step arrays (leading axis = steps) starting at 1-based ``first_step``."""
        start = first_step - 1
        for name, values in block.items():
            try:
                self.array(name)[run_index, start : start + len(values)] = values
            except OSError as exc:
                what = f"'{name}' of steps {first_step}.. of"
                raise self._write_error(what, run_index, exc) from exc

    def write_histograms(
        self, run_index: int, hist_indices: np.ndarray, counts: np.ndarray, outside: np.ndarray
    ) -> None:
        """Write histogram snapshots at positions ``hist_indices`` along 'hist_step'."""
        if len(hist_indices) == 0:
            return
        lo, hi = int(hist_indices[0]), int(hist_indices[-1]) + 1
        assert hi - lo == len(hist_indices), "histogram snapshots must be contiguous"
        try:
            self.array("weight_histogram")[run_index, lo:hi] = counts
            self.array("weight_histogram_outside")[run_index, lo:hi] = outside
        except OSError as exc:
            raise self._write_error("the histograms of", run_index, exc) from exc

    def set_state(self, run_index: int, status: str, steps_done: int | None = None) -> None:
        try:
            if steps_done is not None:
                self.array("steps_done")[run_index] = steps_done
            self.array("status")[run_index] = STATUS[status]
        except OSError as exc:
            raise self._write_error("the state of", run_index, exc) from exc

    def set_failure(self, run_index: int, text: str) -> None:
        """Record why the run's last attempt failed or diverged ('' clears it)."""
        try:
            self.array("failure")[run_index] = text
        except OSError as exc:
            raise self._write_error("the failure text of", run_index, exc) from exc

    def set_stop(self, run_index: int, reason: str, stop_step: int) -> None:
        """Record why training of the run ended and at which step (``stop_reason``,
        ``stop_step``; ``runner.deciding``). Written before the run's ``done`` state."""
        try:
            self.array("stop_reason")[run_index] = reason
            self.array("stop_step")[run_index] = stop_step
        except OSError as exc:
            raise self._write_error("the stop reason of", run_index, exc) from exc

    def set_classes(self, run_index: int, n_classes: int, chance_accuracy: float) -> None:
        """Record the classes of the run's task and the chance accuracy of its evaluated test
        set (``n_classes``, ``chance_accuracy``: the schema says what each means), so that an
        analysis knows them for any task. Written when the run's data are loaded."""
        try:
            self.array("n_classes")[run_index] = n_classes
            self.array("chance_accuracy")[run_index] = chance_accuracy
        except OSError as exc:
            raise self._write_error("the classes of", run_index, exc) from exc

    def classes(self, run_index: int) -> tuple[int, float]:
        """The run's ``n_classes`` and ``chance_accuracy`` (0 and NaN before it started)."""
        return (
            int(self.array("n_classes")[run_index]),
            float(self.array("chance_accuracy")[run_index]),
        )

    def record_environment(self, run_index: int, environment: dict[str, Any]) -> None:
        """Add ``environment`` (:func:`runner.environment.training_environment`) to the run's
        ``environment_json`` unless it is the one the run last trained on, so a run resumed
        elsewhere lists each environment its steps came from, in order. Written at the start
        of each attempt."""
        try:
            recorded = self.environments(run_index)
            if recorded and recorded[-1] == environment:
                return
            text = json.dumps([*recorded, environment], sort_keys=True)
            self.array("environment_json")[run_index] = text
        except OSError as exc:
            raise self._write_error("the environment of", run_index, exc) from exc

    def environments(self, run_index: int) -> list[dict[str, Any]]:
        """The environments the run trained on, first to last ([] before it started)."""
        text = str(self.array("environment_json")[run_index])
        return json.loads(text) if text else []

    def stop(self, run_index: int) -> tuple[str, int]:
        """The run's ``stop_reason`` and ``stop_step``."""
        return str(self.array("stop_reason")[run_index]), int(self.array("stop_step")[run_index])

    def failure(self, run_index: int) -> str:
        return str(self.array("failure")[run_index])

    def _write_error(self, what: str, run_index: int, exc: OSError) -> StoreError:
        """A write that failed (disk full, permission denied, ...), said plainly."""
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return StoreError(
            f"cannot write {what} run {self.run_ids[run_index]} to {self.location.text}: "
            f"{reason}{where}. Steps flushed before stay intact; free space or fix permissions, "
            "then re-run the same command to resume"
        )

    def state(self, run_index: int) -> tuple[str, int]:
        names = {v: k for k, v in STATUS.items()}
        code = int(self.array("status")[run_index])
        return names[code], int(self.array("steps_done")[run_index])

    def spec(self, run_index: int) -> RunSpec:
        return RunSpec.model_validate_json(str(self.array("spec_json")[run_index]))

    def index_of(self, run_id: str) -> int | None:
        """The index of the run with id ``run_id`` under any scheme: its id in this store, the id
        it had before the store was re-keyed (``init_from: {store, run}`` written then), or, in a
        store not yet re-keyed, its current-scheme id. None when no run of the store has it."""
        if run_id in self.run_ids:
            return self.run_ids.index(run_id)
        renamed = migrate.old_to_new(self.location)
        if renamed.get(run_id) in self.run_ids:
            return self.run_ids.index(renamed[run_id])
        if self.id_scheme != RUN_ID_SCHEME:
            current = [self.spec(i).run_id for i in range(len(self.run_ids))]
            if run_id in current:
                return current.index(run_id)
        return None

    # -- files beside the arrays ----------------------------------------------------------------
    def checkpoint_path(self, run_index: int) -> Path:
        """Local file of the run's checkpoint (local stores only; see :meth:`read_checkpoint`)."""
        return self.location.path / "_state" / "checkpoints" / f"{self.run_ids[run_index]}.pt"

    def _checkpoint_parts(self, run_index: int) -> tuple[str, ...]:
        return ("_state", "checkpoints", f"{self.run_ids[run_index]}.pt")

    def read_checkpoint(self, run_index: int) -> bytes | None:
        """The run's last checkpoint (serialised), or None when it has none yet."""
        return self.location.read_bytes(*self._checkpoint_parts(run_index))

    def write_checkpoint(self, run_index: int, data: bytes) -> None:
        """Replace the run's checkpoint atomically (a reader sees the old or the new one)."""
        try:
            self.location.write_bytes(data, *self._checkpoint_parts(run_index))
        except OSError as exc:
            raise self._write_error("the checkpoint of", run_index, exc) from exc

    def lease(self, run_index: int, ttl: float = DEFAULT_LEASE_TTL) -> Lease:
        """The run's lease (not yet taken): an flock for local stores, a timed lease otherwise."""
        name = self.run_ids[run_index]
        if self.location.is_local:
            return FlockLease(self.location.path / "_state" / "locks" / f"{name}.lock")
        return TimedLease(self.location, ("_state", "leases", f"{name}.json"), ttl=ttl)

    @contextlib.contextmanager
    def run_lock(self, run_index: int) -> Iterator[bool]:
        """Try to take the run's lease; yields False when another live process holds it."""
        lease = self.lease(run_index)
        if lease.acquire() is not None:
            yield False
            return
        try:
            yield True
        finally:
            lease.release()


def _differences(stored: Any, now: Any, path: str = "") -> list[str]:
    """``path = stored value (now: value)`` for every leaf where two spec dumps differ."""
    if isinstance(stored, dict) and isinstance(now, dict):
        keys = sorted(set(stored) | set(now))
        return [
            d
            for k in keys
            for d in _differences(stored.get(k), now.get(k), f"{path}.{k}" if path else k)
        ]
    return [] if stored == now else [f"{path} = {stored!r} (now {now!r})"]


def recover_interrupted_append(location: str | os.PathLike | StoreLocation) -> int | None:
    """Roll back an append of runs that was killed midway; return the runs kept (None when no
    append was interrupted).

    The journal (``schemas.APPEND_JOURNAL``) holds the run count before the append. Arrays along
    ``run`` grow one by one (``run`` last), so a kill leaves some grown and some not, or ``run``
    grown with empty ids; every one is shrunk back to that count. The appended runs had not
    started (training waits for the append), so nothing measured is dropped; the writer that
    was appending adds them again when it goes on.

    Raises
    ------
    StoreError
        When the journal's writer (``host:pid:tag``) is a live process of this host: it is
        appending now, not interrupted. A writer on another host cannot be checked; appends
        hold the store alone (the search between rounds, ``--extend``), so it is taken as gone.
    """
    loc = location if isinstance(location, StoreLocation) else _parse(location)
    parts = schemas.APPEND_JOURNAL.split("/")
    journal = loc.read_bytes(*parts)
    if journal is None:
        return None
    record = json.loads(journal)
    host, _, rest = str(record.get("holder", "")).partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit() and _alive(int(pid)):
        raise StoreError(
            f"{loc.text}: process {pid} is adding runs to this store now "
            f"({schemas.APPEND_JOURNAL}); wait for it to finish, then run this command again"
        )
    runs_before = int(record["runs_before"])
    root = zarr.open_group(loc.zarr_store(), mode="r+", zarr_format=3, use_consolidated=False)
    for _, array in root.arrays():
        names = tuple(array.metadata.dimension_names or ())
        if names[:1] == ("run",) and array.shape[0] != runs_before:
            array.resize((runs_before, *array.shape[1:]))
    consolidate(loc.zarr_store())
    loc.remove(*parts)
    return runs_before


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own journal can only be left from an earlier failure
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _parse(location: str | os.PathLike) -> StoreLocation:
    try:
        return parse_location(location)
    except LocationError as exc:
        raise StoreError(str(exc)) from None


def _has_entries(loc: StoreLocation) -> bool:
    """Whether anything at all is stored at the location (a store without root metadata is
    either being uploaded or broken; both are refused rather than overwritten)."""
    if loc.is_local:
        return loc.path.is_dir() and any(loc.path.iterdir())
    return bool(loc.fs.exists(loc.root)) and bool(loc.fs.ls(loc.root, detail=False))


def _upload_new_store(
    loc: StoreLocation,
    runs: Sequence[RunSpec],
    settings: StoreSettings,
    grid_text: str,
    id_scheme: int = RUN_ID_SCHEME,
) -> None:
    with tempfile.TemporaryDirectory(prefix="cds-store-") as tmp:
        local = Path(tmp) / "store.zarr"
        _write_new_store(local, runs, settings, grid_text, id_scheme)
        files = sorted(p for p in local.rglob("*") if p.is_file())
        root_meta = local / "zarr.json"
        # The root metadata goes last: a store without it is not a store yet.
        for path in [*(p for p in files if p != root_meta), root_meta]:
            loc.fs.pipe_file(loc.join(*path.relative_to(local).parts), path.read_bytes())


def _wait_for_upload(loc: StoreLocation, seconds: float = 30.0) -> None:
    """Give another process that is uploading the store (root metadata last) time to finish."""
    deadline = time.monotonic() + seconds
    while not loc.exists("zarr.json") and time.monotonic() < deadline:
        time.sleep(0.5)


def _validate_existing(loc: StoreLocation) -> None:
    """Refuse (untouched) an existing store that does not follow the schema."""
    from schemas.validate import StoreValidationError, validate_store

    try:
        validate_store(loc.text if not loc.is_local else loc.root)
    except StoreValidationError as exc:
        raise StoreError(
            f"{exc}\n{loc.text} was left untouched; repair or delete it, or write to another --out"
        ) from None
