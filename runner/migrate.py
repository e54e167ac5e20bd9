"""Re-keying a store written under an older run-id scheme (:mod:`runner.run_identity`).

``cds-run`` calls :func:`upgrade_run_ids` when it opens an existing store for a grid. A store of
scheme 1 (no ``run_id_scheme`` attribute) whose stored specs are exactly this grid's runs is
re-keyed in place; nothing trained is touched:

1. the store-wide migration lease is taken (a second ``cds-run`` waits for the first);
2. the store is refused, unchanged, while any of its runs is held by a live process;
3. ``_state/run_id_migration.json`` is written: old id -> new id of every run (it stays, as the
   record of the ids the store had, e.g. for papers or grids that name an old id);
4. each run's checkpoint ``_state/checkpoints/<old>.pt`` is renamed to ``<new>.pt``, and its
   old lock (or lease) file removed;
5. the ``run`` coordinate, and ``parent_run`` values naming a run of the store, are rewritten;
6. the root attribute ``run_id_scheme`` is set, last: until then the store reads as scheme 1.

Every step is idempotent and the old and new id of each run are both recomputed from its
``spec_json`` (never rewritten), so a migration killed at any point is finished by the next
``cds-run``: a stored id may then be either, a checkpoint may be under either name.
This module does not import torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from pydantic import ValidationError

from runner.leases import FlockLease, Lease, TimedLease
from runner.run_identity import LEGACY_RUN_ID_SCHEME, RUN_ID_SCHEME, SCHEME_ATTRIBUTE, legacy_hash
from runner.spec import RunSpec
from runner.storage import StoreLocation

#: The record of a re-keying, beside the checkpoints (``_state`` holds no data).
RECORD_PARTS = ("_state", "run_id_migration.json")
#: Name of the store-wide lease taken while re-keying (a lock file or a lease object).
MIGRATION_LEASE = "run-id-migration"
#: Seconds a second ``cds-run`` waits for another one that is re-keying the same store (the
#: re-keying renames files and rewrites one coordinate: seconds even for thousands of runs).
MIGRATION_WAIT_S = 300.0
#: Seconds between attempts to take the migration lease while another process holds it.
_POLL_S = 0.2


class RunIdError(RuntimeError):
    """A store whose run ids cannot be checked or re-keyed; the message says why and what to do."""


@dataclass(frozen=True)
class RunIdMigration:
    """A completed re-keying: ``old_ids[i]`` became ``new_ids[i]`` (grid order)."""

    from_scheme: int
    to_scheme: int
    old_ids: tuple[str, ...]
    new_ids: tuple[str, ...]
    checkpoints_moved: int


def stored_scheme(attrs: dict) -> int:
    """The run-id scheme a store was written with (scheme 1 before the attribute existed)."""
    return int(attrs.get(SCHEME_ATTRIBUTE, LEGACY_RUN_ID_SCHEME))


def parse_stored_spec(text: str, index: int, where: str) -> RunSpec:
    """A stored ``spec_json`` read by this version, or an error naming the field that it cannot
    read (a field renamed or removed since the store was written)."""
    try:
        return RunSpec.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(spec)"
        raise RunIdError(
            f"{where}: run {index}'s stored spec cannot be read by this version of cds "
            f"({field}: {first['msg']}); open the store with the version that wrote it "
            "(its created_by attribute), or write to another --out"
        ) from None


@dataclass(frozen=True)
class _Plan:
    old: list[str]  # scheme-1 id of each run (the hash of its spec_json)
    new: list[str]  # current-scheme id of each run
    stored: list[str]  # the run coordinate as it is now (old, or new after a killed migration)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.old, self.new, strict=True))


def _plan(root: zarr.Group, runs: Sequence[RunSpec], where: str) -> _Plan | None:
    """Old and new ids of a scheme-1 store, or None when its runs are not ``runs`` (the
    caller then refuses it as a store of another grid, untouched)."""
    stored = [str(r) for r in root["run"][...]]
    texts = [str(t) for t in root["spec_json"][...]]
    if len(stored) != len(runs):
        return None
    old = [legacy_hash(t) for t in texts]
    new = [parse_stored_spec(t, i, where).run_id for i, t in enumerate(texts)]
    for i, (have, was, now) in enumerate(zip(stored, old, new, strict=True)):
        if have not in (was, now):
            raise RunIdError(
                f"{where}: run {i} has id {have}, which is not the hash of its stored spec under "
                f"scheme {LEGACY_RUN_ID_SCHEME} ({was}) nor under scheme {RUN_ID_SCHEME} ({now}): "
                "the run coordinate or spec_json was edited; restore them or write to another --out"
            )
    if new != [r.run_id for r in runs]:
        return None
    return _Plan(old, new, stored)


def upgrade_run_ids(
    loc: StoreLocation, runs: Sequence[RunSpec], wait_s: float = MIGRATION_WAIT_S
) -> RunIdMigration | None:
    """Re-key the store at ``loc`` to the current scheme if it holds ``runs`` under an older one.

    Returns the migration done, or None when there was nothing to do (already current, re-keyed
    meanwhile by another process, or a store of another grid, which the caller refuses).

    Raises
    ------
    RunIdError
        When the store is of a newer scheme, a run is held by a live process, a stored spec
        cannot be read, or a stored id matches neither scheme; the store is then unchanged
        except for steps of an earlier, interrupted re-keying.
    """
    root = zarr.open_group(loc.zarr_store(), mode="r", zarr_format=3)
    scheme = stored_scheme(dict(root.attrs))
    if scheme > RUN_ID_SCHEME:
        raise RunIdError(
            f"{loc.text} was written with run-id scheme {scheme}; this version of cds knows "
            f"schemes up to {RUN_ID_SCHEME}: upgrade cds to continue this store"
        )
    if scheme == RUN_ID_SCHEME or _plan(root, runs, loc.text) is None:
        return None
    with _migration_lease(loc, wait_s):
        root = zarr.open_group(loc.zarr_store(), mode="r+", zarr_format=3)
        if stored_scheme(dict(root.attrs)) == RUN_ID_SCHEME:
            return None  # another process re-keyed it while we waited
        plan = _plan(root, runs, loc.text)
        assert plan is not None  # the specs are never rewritten
        _refuse_if_held(loc, plan)
        _write_record(loc, plan, completed=False)
        moved = sum(_move_run_files(loc, was, now) for was, now in plan.pairs)
        root["run"][...] = np.array(plan.new, dtype=object)
        if "parent_run" in root:
            renamed = dict(plan.pairs)
            parents = [str(p) for p in root["parent_run"][...]]
            root["parent_run"][...] = np.array([renamed.get(p, p) for p in parents], dtype=object)
        root.attrs[SCHEME_ATTRIBUTE] = RUN_ID_SCHEME  # last: the store is scheme 2 from here
        _write_record(loc, plan, completed=True)
    return RunIdMigration(
        LEGACY_RUN_ID_SCHEME, RUN_ID_SCHEME, tuple(plan.old), tuple(plan.new), moved
    )


@contextmanager
def _migration_lease(loc: StoreLocation, wait_s: float) -> Iterator[None]:
    lease = _lease(loc, MIGRATION_LEASE)
    deadline = time.monotonic() + wait_s
    while (holder := lease.acquire()) is not None:
        if time.monotonic() > deadline:
            raise RunIdError(
                f"{loc.text}: another process ({holder.holder}) has been re-keying this store's "
                f"run ids for over {wait_s:.0f} s; if it is gone, re-run (a local lock dies "
                "with its holder, an fsspec lease expires)"
            )
        time.sleep(_POLL_S)
    try:
        yield
    finally:
        lease.release()


def _lease(loc: StoreLocation, name: str) -> Lease:
    """The lease named ``name``, as ``RunStore.lease`` makes it for a run of that id."""
    if loc.is_local:
        return FlockLease(loc.path / "_state" / "locks" / f"{name}.lock")
    return TimedLease(loc, ("_state", "leases", f"{name}.json"))


def _refuse_if_held(loc: StoreLocation, plan: _Plan) -> None:
    """Refuse while a live process holds any run under its stored id (a cds-run of the version
    that wrote the store, still training)."""
    for i, was in enumerate(plan.old):
        if loc.is_local:
            if not (loc.path / "_state" / "locks" / f"{was}.lock").exists():
                continue
            lease = _lease(loc, was)
            holder = lease.acquire()
            lease.release()
        else:
            current = TimedLease(loc, ("_state", "leases", f"{was}.json")).current()
            holder = current if current and current.expires > time.time() else None
        if holder is not None:
            raise RunIdError(
                f"{loc.text}: run {i} ({was}) is being trained by process {holder.holder}; its "
                "run ids can be upgraded only while no process trains it: let that cds-run "
                "finish (or stop it), then re-run this command"
            )


def _move_run_files(loc: StoreLocation, was: str, now: str) -> bool:
    """Rename the run's checkpoint to its new id and drop its old lock or lease file; True when
    a checkpoint was moved. Idempotent: a second call finds the new name and does nothing."""
    if was == now:
        return False
    old, new = ("_state", "checkpoints", f"{was}.pt"), ("_state", "checkpoints", f"{now}.pt")
    moved = False
    if loc.exists(*old):
        if loc.exists(*new):
            # Only a copy-then-delete killed in between leaves both (fsspec stores): equal bytes.
            if loc.read_bytes(*old) != loc.read_bytes(*new):
                raise RunIdError(
                    f"{loc.text}: both {loc.join(*old)} and {loc.join(*new)} exist and differ; "
                    "keep the one with the most steps under the new name and delete the other"
                )
        elif loc.is_local:
            (loc.path / "_state" / "checkpoints" / f"{was}.pt").rename(loc.join(*new))
            moved = True
        else:
            data = loc.read_bytes(*old)
            assert data is not None
            loc.write_bytes(data, *new)
            moved = True
        loc.remove(*old)
    if loc.is_local:
        loc.remove("_state", "locks", f"{was}.lock")
    else:
        loc.remove("_state", "leases", f"{was}.json")
    return moved


def _write_record(loc: StoreLocation, plan: _Plan, completed: bool) -> None:
    import runner

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    previous = loc.read_bytes(*RECORD_PARTS)
    started = json.loads(previous).get("started_utc", now) if previous else now
    record = {
        "from_scheme": LEGACY_RUN_ID_SCHEME,
        "to_scheme": RUN_ID_SCHEME,
        "by": f"cds {runner.__version__}",
        "started_utc": started,
        "completed_utc": now if completed else None,
        "runs": [{"index": i, "old": w, "new": n} for i, (w, n) in enumerate(plan.pairs)],
    }
    loc.write_bytes(json.dumps(record, indent=1).encode(), *RECORD_PARTS)


def old_to_new(loc: StoreLocation) -> dict[str, str]:
    """The ids a re-keyed store had before (old -> new), from its migration record; empty for a
    store never re-keyed."""
    data = loc.read_bytes(*RECORD_PARTS)
    if data is None:
        return {}
    return {r["old"]: r["new"] for r in json.loads(data)["runs"]}


def renamed_checkpoint(path: Path) -> Path:
    """Where a checkpoint file named by a run's old id went when its (local) store was re-keyed:
    ``STORE/_state/checkpoints/<new>.pt`` for ``<old>.pt`` absent; ``path`` itself otherwise.
    Keeps ``init_from: {checkpoint: ...}`` in grids written before the re-keying working."""
    if path.exists() or path.parent.name != "checkpoints" or path.suffix != ".pt":
        return path
    record = path.parent.parent / RECORD_PARTS[-1]
    if not record.is_file():
        return path
    new = {r["old"]: r["new"] for r in json.loads(record.read_text())["runs"]}.get(path.stem)
    return path if new is None else path.with_name(f"{new}.pt")
