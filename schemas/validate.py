"""Check a run store against its schema before anything reads it.

Structural checks read only metadata and the small coordinate arrays, so they run on every open.
``deep=True`` also reads the per-step metrics to check the NaN conventions (slower).

Imported stores (``cds-analyze import``, root attribute ``import_kind``) hold runs logged by
other tools, which often log the training loss every N steps: the deep check's rule that
``train_loss`` is measured at every step up to ``steps_done`` is the runner's, so for them it
is not a problem but a note (``notes``) saying how sparse it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

import schemas

#: Dtype kinds that count as the schema's "str".
_STRING_KINDS = ("T", "U", "O")


class StoreValidationError(ValueError):
    """A store that does not follow the run-store schema; ``problems`` lists every finding."""

    def __init__(self, location: str, problems: list[str]):
        self.location = location
        self.problems = problems
        super().__init__(
            f"{location} is not a valid cds run store:\n  - " + "\n  - ".join(problems)
        )


class _Unreadable(Exception):
    """Metadata or a chunk that zarr cannot decode (torn file, garbage bytes, bad JSON)."""

    def __init__(self, what: str, exc: BaseException):
        reason = str(exc).splitlines()[0] if str(exc) else ""
        super().__init__(f"{what} cannot be read ({type(exc).__name__}: {reason})")


def _read(arrays: dict[str, zarr.Array], name: str, selection: Any = ...) -> np.ndarray:
    try:
        return arrays[name][selection]
    except Exception as exc:  # any decoding failure: name the variable, not the codec
        raise _Unreadable(f"variable '{name}' has a chunk that", exc) from None


def _list_arrays(group: zarr.Group, schema: dict) -> dict[str, zarr.Array]:
    """The group's arrays; when one's metadata is broken, name it."""
    try:
        return dict(group.arrays())
    except Exception as exc:
        for name in schema["variables"]:
            try:
                group.get(name)
            except Exception as inner:
                raise _Unreadable(f"the metadata (zarr.json) of variable '{name}'", inner) from None
        raise _Unreadable("the metadata (zarr.json) of an array", exc) from None


def _open_group(location: str) -> zarr.Group:
    try:
        # The arrays' own metadata: a consolidated copy may lag behind them.
        group = zarr.open_group(location, mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        raise StoreValidationError(
            location, ["no Zarr group found here; give the path of a store written by cds-run"]
        ) from None
    return group


def _append_interrupted(group: zarr.Group) -> bool:
    from zarr.core.sync import sync

    try:
        return bool(sync(group.store.exists(schemas.APPEND_JOURNAL)))
    except Exception:  # a store that cannot say: the array checks speak for it
        return False


def _dtype_ok(actual: np.dtype, expected: str) -> bool:
    if expected == schemas.STRING_DTYPE:
        return actual.kind in _STRING_KINDS
    return actual == np.dtype(expected)


def _check_attributes(attrs: Mapping[str, Any], schema: dict) -> list[str]:
    problems = []
    types = {"str": str, "int": int}
    for name, spec in schema["attributes"].items():
        if name not in attrs:
            if spec.get("optional", False):  # added later: absent in older stores
                continue
            problems.append(f"attribute '{name}' is missing ({spec['description']})")
        elif not isinstance(attrs[name], types[spec["type"]]):
            problems.append(
                f"attribute '{name}' should be of type {spec['type']}, "
                f"got {type(attrs[name]).__name__}"
            )
    return problems


def _check_arrays(arrays: dict[str, zarr.Array], schema: dict) -> list[str]:
    problems = []
    dim_sizes: dict[str, tuple[int, str]] = {}
    for name, spec in schema["variables"].items():
        if name not in arrays:
            if not spec.get("optional", False):  # optional: added later, absent in older stores
                problems.append(f"variable '{name}' is missing ({spec['description']})")
            continue
        array = arrays[name]
        dims = list(array.metadata.dimension_names or ())
        if dims != spec["dims"]:
            problems.append(
                f"variable '{name}' has dimensions {tuple(dims)}; the schema requires "
                f"{tuple(spec['dims'])}"
            )
            continue
        if not _dtype_ok(array.dtype, spec["dtype"]):
            problems.append(
                f"variable '{name}' has dtype {array.dtype}; the schema requires {spec['dtype']}"
            )
    for name, array in arrays.items():
        dims = list(array.metadata.dimension_names or ())
        if not dims:
            problems.append(f"array '{name}' has no dimension names; every array needs them")
            continue
        if name not in schema["variables"] and dims != ["run"]:
            problems.append(
                f"unexpected variable '{name}' with dimensions {tuple(dims)}; only extra "
                "run coordinates (dimension 'run' alone) may be added"
            )

        for dim, size in zip(dims, array.shape, strict=False):
            if dim in dim_sizes and dim_sizes[dim][0] != size:
                first_size, first = dim_sizes[dim]
                problems.append(
                    f"dimension '{dim}' has length {size} in '{name}' but {first_size} in '{first}'"
                )
            dim_sizes.setdefault(dim, (size, name))
        role = schemas.role_of(name, schema["schema_version"])
        written_while_training = role not in schemas.WRITTEN_ONCE_ROLES
        if written_while_training and "run" in dims and array.chunks[dims.index("run")] != 1:
            problems.append(
                f"variable '{name}' has chunks of {array.chunks[dims.index('run')]} runs; "
                "what training writes must never share a chunk between two runs"
            )
    return problems


def _check_coordinates(
    arrays: dict[str, zarr.Array], schema: dict, decoded: dict[str, np.ndarray] | None = None
) -> list[str]:
    problems = []
    step = _read(arrays, "step")
    if not np.array_equal(step, np.arange(1, len(step) + 1)):
        problems.append("coordinate 'step' must be 1, 2, ..., S (dense, 1-based)")
    hist_step = _read(arrays, "hist_step")
    if len(hist_step) and (
        np.any(np.diff(hist_step) <= 0) or hist_step[0] < 1 or hist_step[-1] > len(step)
    ):
        problems.append("coordinate 'hist_step' must be strictly increasing steps within 1..S")
    edges = _read(arrays, "bin_edge")
    if len(edges) < 2 or np.any(np.diff(edges) <= 0) or not np.all(np.isfinite(edges)):
        problems.append("coordinate 'bin_edge' must be finite and strictly increasing")
    run_ids = [str(r) for r in _read(arrays, "run")]
    # 1-D arrays (coordinates, per-run) are small: decode all, and keep what was decoded for
    # open_runs (on a large store each is a thousand one-run chunk files: read them once).
    seen = decoded if decoded is not None else {}
    for name, array in arrays.items():
        if len(array.metadata.dimension_names or ()) == 1 and name not in seen:
            seen[name] = _read(arrays, name)
    if len(set(run_ids)) != len(run_ids):
        problems.append("coordinate 'run' holds duplicate run ids")
    codes = schema["variables"]["status"]["flag_values"]
    status = seen["status"] if "status" in seen else _read(arrays, "status")
    bad = sorted(set(np.unique(status).tolist()) - set(codes))
    if bad:
        problems.append(f"variable 'status' holds unknown codes {bad}; allowed {codes}")
    done = seen["steps_done"] if "steps_done" in seen else _read(arrays, "steps_done")
    planned = seen["steps_planned"] if "steps_planned" in seen else _read(arrays, "steps_planned")
    if np.any(done < 0) or np.any(done > planned):
        problems.append("variable 'steps_done' must lie in 0..steps_planned for every run")
    if np.any(planned > len(step)) or np.any(planned < 1):
        problems.append("variable 'steps_planned' must lie in 1..S for every run")
    done_code = schemas.status_codes(schema["schema_version"])["done"]
    early = stopped_early(arrays, seen)
    unfinished = np.flatnonzero((status == done_code) & (done != planned) & ~early)
    if len(unfinished):
        problems.append(
            f"{len(unfinished)} run(s) marked done have steps_done != steps_planned "
            f"and were not stopped early (no stop_reason; first: run index {unfinished[0]})"
        )
    if early.any():
        stop_step = seen["stop_step"] if "stop_step" in seen else _read(arrays, "stop_step")
        wrong = np.flatnonzero(early & ((status != done_code) | (stop_step != done)))
        if len(wrong):
            problems.append(
                f"{len(wrong)} run(s) stopped early (stop_reason set) are not 'done' with "
                f"stop_step = steps_done (first: run index {wrong[0]})"
            )
    return problems


#: ``stop_reason`` values that do not mean an early stop: no rule, or every planned step taken.
NOT_EARLY_STOP_REASONS = ("", "budget")


def stopped_early(
    arrays: Mapping[str, zarr.Array], seen: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Per run: whether its ``stop_reason`` names an early stop (all False in stores without
    the variable). Such a run is ``done`` with ``steps_done = stop_step``, possibly below
    ``steps_planned``."""
    seen = seen or {}
    if "stop_reason" in seen:
        reasons = seen["stop_reason"]
    elif "stop_reason" in arrays:
        reasons = _read(arrays, "stop_reason")  # type: ignore[arg-type]
    else:
        return np.zeros(arrays["status"].shape[0], dtype=bool)
    return ~np.isin(np.asarray([str(r) for r in reasons]), NOT_EARLY_STOP_REASONS)


#: Root attribute that marks a store written by ``cds-analyze import`` (its value: the kind).
IMPORT_KIND_ATTR = "import_kind"


def _check_values(
    arrays: dict[str, zarr.Array],
    schema: dict,
    import_kind: str | None = None,
    notes: list[str] | None = None,
) -> list[str]:
    """NaN conventions: train metrics dense up to steps_done, nothing measured after it (except
    the unacknowledged last block of an interrupted run). In an imported store (``import_kind``)
    a sparse train loss is as logged: counted into ``notes``, not a problem."""
    problems = []
    sparse_runs: list[tuple[int, int, int]] = []  # imported: (run index, measured, steps_done)
    done = _read(arrays, "steps_done")
    status = _read(arrays, "status")
    codes = schemas.status_codes(schema["schema_version"])
    # A crash between a block's metric write and its steps_done update leaves unacknowledged
    # values after steps_done; resuming overwrites them. Only interrupted runs may have them.
    interrupted = (codes["running"], codes["failed"])
    steps = np.arange(1, arrays["step"].shape[0] + 1)
    for name in schemas.variables_with_role("metric"):
        if name not in arrays:  # an optional metric a store written before it lacks
            continue
        for run_index in range(len(done)):
            values = _read(arrays, name, run_index)
            values = values.reshape(len(steps), -1)
            beyond = np.isfinite(values[steps > done[run_index]]).any()
            if beyond and status[run_index] not in interrupted:
                problems.append(
                    f"variable '{name}' has values beyond steps_done={done[run_index]} in run "
                    f"index {run_index}"
                )
            # A diverged run ends on its first non-finite loss; every earlier step is measured.
            dense = done[run_index] - (status[run_index] == codes["diverged"])
            gaps = name == "train_loss" and np.isnan(values[:dense]).any()
            if gaps and import_kind:
                measured = int(np.isfinite(values[:dense]).any(axis=1).sum())
                sparse_runs.append((run_index, measured, int(dense)))
            elif gaps:
                problems.append(
                    f"variable 'train_loss' has NaN gaps within the flushed steps of run index "
                    f"{run_index}"
                )
    if sparse_runs and notes is not None:
        index, measured, dense = sparse_runs[0]
        notes.append(
            f"imported store ({import_kind}): train_loss is logged sparsely in "
            f"{len(sparse_runs)} of {len(done)} runs (run index {index}: {measured} of {dense} "
            "steps measured); that is how the source logged it, so the dense-train-loss rule of "
            "the runner's stores is not applied"
        )
    return problems


def validate_store(
    location: str, deep: bool = False, notes: list[str] | None = None
) -> dict[str, Any]:
    """Validate the store at ``location`` (a path or URL); return its attributes.

    Parameters
    ----------
    location
        Path or URL of a Zarr v3 group written by ``cds-run``.
    deep
        Also read every metric to check the NaN conventions (reads the whole store).
    notes
        A list that receives what the checks found that is not a problem (an imported store's
        sparse training loss), one sentence each.

    Raises
    ------
    StoreValidationError
        Listing every problem found, each naming the offending attribute, variable or dimension.
    """
    location = str(location)
    try:
        return _validate(location, deep, notes=notes)
    except _Unreadable as exc:
        raise StoreValidationError(location, [str(exc)]) from None


def validate_and_read(location: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`validate_store` (not deep), also returning every 1-D array it decoded (the
    coordinates and per-run variables), by name."""
    decoded: dict[str, np.ndarray] = {}
    try:
        return _validate(location, False, decoded), decoded
    except _Unreadable as exc:
        raise StoreValidationError(location, [str(exc)]) from None


def _validate(
    location: str,
    deep: bool,
    decoded: dict[str, np.ndarray] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    try:
        group = _open_group(location)
        attrs = dict(group.attrs)
    except StoreValidationError:
        raise
    except Exception as exc:  # e.g. a root zarr.json that is not JSON
        raise _Unreadable("the root metadata (zarr.json)", exc) from None
    if attrs.get("schema_name") != schemas.SCHEMA_NAME:
        raise StoreValidationError(
            location,
            [
                f"attribute 'schema_name' is {attrs.get('schema_name')!r}, expected "
                f"{schemas.SCHEMA_NAME!r}: this is not a cds run store"
            ],
        )
    version = attrs.get("schema_version")
    if version not in schemas.SUPPORTED_VERSIONS:
        raise StoreValidationError(
            location,
            [
                f"attribute 'schema_version' is {version!r}; this cdsanalysis reads versions "
                f"{list(schemas.SUPPORTED_VERSIONS)} (upgrade cds, or rewrite the store)"
            ],
        )
    if _append_interrupted(group):
        raise StoreValidationError(
            location,
            [
                f"an append of runs to this store was interrupted ({schemas.APPEND_JOURNAL} is "
                "there), so its arrays disagree on the number of runs: re-run the cds-run command "
                "that was adding runs (cds-run --search, or --extend); it rolls the unfinished "
                "append back and goes on, and no trained step is lost"
            ],
        )
    schema = schemas.load_schema(version)
    problems = _check_attributes(attrs, schema)
    arrays = _list_arrays(group, schema)
    problems += _check_arrays(arrays, schema)
    if not problems:
        problems += _check_coordinates(arrays, schema, decoded)
    if not problems and deep:
        problems += _check_values(arrays, schema, attrs.get(IMPORT_KIND_ATTR), notes)
    if problems:
        raise StoreValidationError(location, problems)
    return attrs


def run_failures(location: str) -> list[dict[str, Any]]:
    """The runs whose last attempt failed or diverged, in store order: ``index``, ``run``,
    ``status`` and ``failure`` (the full traceback of a failed run, the first non-finite loss of
    a diverged one; '' in stores written before the runner kept it)."""
    group = _open_group(str(location))
    arrays = dict(group.arrays())
    version = int(group.attrs["schema_version"])
    codes = schemas.status_codes(version)
    names = {code: name for name, code in codes.items()}
    status = _read(arrays, "status")
    run_ids = _read(arrays, "run")
    texts = _read(arrays, "failure") if "failure" in arrays else None
    found = []
    for index in np.flatnonzero(np.isin(status, [codes["failed"], codes["diverged"]])):
        found.append(
            {
                "index": int(index),
                "run": str(run_ids[index]),
                "status": names[int(status[index])],
                "failure": "" if texts is None else str(texts[index]),
            }
        )
    return found
