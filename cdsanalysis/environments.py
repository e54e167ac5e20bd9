"""What the runs of a store trained on (``environment_json``): counts, a line, a warning.

A spec trains to the same numbers bit for bit only on an equal environment (the schema's
``environment_json``): another CPU vector unit, library build, thread count or trainer can
change the floats, and near the CDS a run's regime. A report over runs from several
environments says so, since a difference between its sizes may then partly be one between
machines. Stores written before the field, and imported runs, record none: they count as
"not recorded" and raise no warning.
"""

from __future__ import annotations

import json
from typing import Any

import xarray as xr

from cdsanalysis.cds import as_strings

#: The builds an environment names, in the order a line names them.
BUILD_FIELDS = ("torch", "numpy", "tokenizers", "transformers", "cuda", "python")
#: The fields of an environment that can change a run's floats.
#: (``device`` and ``machine`` are implied by ``device_name`` and ``cpu_capability``.)
COMPARED_FIELDS = ("device_name", "cpu_capability", "torch_threads", "trainer", *BUILD_FIELDS)
#: The description of runs that started with no record.
NOT_RECORDED = "not recorded (a store written before environment_json, or imported runs)"


def run_environments(ds: xr.Dataset) -> list[list[dict[str, Any]]]:
    """Per run, the environments it trained on, first to last ([] where none is recorded)."""
    if "environment_json" not in ds.variables:
        return [[] for _ in range(ds.sizes["run"])]
    texts = as_strings(ds["environment_json"].values)
    return [json.loads(str(t)) if str(t) else [] for t in texts]


def _key(environment: dict[str, Any]) -> tuple:
    return tuple(environment.get(f, "") for f in COMPARED_FIELDS)


def describe(environment: dict[str, Any]) -> str:
    """One environment in words: 'AMD EPYC (AVX2, 1 torch thread), sequential, torch ...'."""
    threads = environment.get("torch_threads", "?")
    unit = environment.get("cpu_capability", "")
    where = f"{environment.get('device_name', '?')} ({unit}, {threads} torch thread"
    where += "s)" if threads != 1 else ")"
    builds = [f"{name} {environment[name]}" for name in BUILD_FIELDS if environment.get(name)]
    return ", ".join([where, str(environment.get("trainer", "?")), *builds])


def environment_counts(ds: xr.Dataset) -> list[dict[str, Any]]:
    """The distinct environments the runs trained on, each with ``description`` and ``n_runs``
    (a run resumed elsewhere counts under each of its environments), most runs first; then
    ``{"description": NOT_RECORDED, "n_runs": k}`` for the runs that started with no record
    (stores written before the field, imported runs), if any."""
    status = as_strings(ds["status"].values)
    groups: dict[tuple, dict[str, Any]] = {}
    unrecorded = 0
    for environments, state in zip(run_environments(ds), status, strict=True):
        if not environments:
            unrecorded += state != "pending"
            continue
        for environment in environments:
            entry = groups.setdefault(
                _key(environment), {"description": describe(environment), "n_runs": 0}
            )
            entry["n_runs"] += 1
    counts = sorted(groups.values(), key=lambda e: -e["n_runs"])
    if unrecorded:
        counts.append({"description": NOT_RECORDED, "n_runs": unrecorded})
    return counts


def environment_line(counts: list[dict[str, Any]]) -> str:
    """'Trained on: 24 runs: <environment>; 3 runs: <another>'; '' when there are no runs."""
    if not counts:
        return ""
    parts = [
        f"{c['n_runs']} run{'s' if c['n_runs'] != 1 else ''}: {c['description']}" for c in counts
    ]
    return "Trained on: " + "; ".join(parts)


def environment_warnings(counts: list[dict[str, Any]]) -> list[str]:
    """A warning when the recorded runs trained on more than one environment."""
    recorded = [c for c in counts if c["description"] != NOT_RECORDED]
    if len(recorded) < 2:
        return []
    return [
        f"the runs trained on {len(recorded)} environments (environment_json): another CPU, "
        "library build, thread count or trainer can change a run's numbers, and near the CDS "
        "its regime, so a difference between sizes or seeds may partly be one between "
        "environments; compare runs of one environment, or train the grid on one"
    ]
