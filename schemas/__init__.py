"""The versioned run-store schema shared by the runner (writer) and cdsanalysis (reader).

The machine-readable definition lives in ``run_store_v<N>.json`` beside this file; the human
page is ``README.md``. Both packages load it from here so that writer and reader cannot drift.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_NAME = "cds-run-store"
CURRENT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

#: The journal of an append of runs in progress (``cds-run --search`` between rounds,
#: ``--extend``), relative to the store's root: JSON ``{"runs_before": N}``, written before the
#: first array grows and removed once every array has. Found by a later writer, it means the
#: append was interrupted: the writer shrinks every array along ``run`` back to ``N`` runs (the
#: appended runs had not started) and goes on. Readers refuse such a store and say so.
APPEND_JOURNAL = "_state/append.json"

# Attributes of variables copied from the schema into the store (and checked on open).
STRING_DTYPE = "str"


@cache
def load_schema(version: int = CURRENT_VERSION) -> dict[str, Any]:
    """Return the schema dictionary of ``version``.

    Raises
    ------
    ValueError
        If ``version`` is not a schema version this package knows.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(
            f"unknown run-store schema version {version!r}; this package reads "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    text = resources.files(__name__).joinpath(f"run_store_v{version}.json").read_text()
    return json.loads(text)


def variables_with_role(role: str, version: int = CURRENT_VERSION) -> list[str]:
    """Names of the schema variables whose ``role`` is ``role`` (e.g. ``"metric"``)."""
    return [name for name, v in load_schema(version)["variables"].items() if v["role"] == role]


#: Roles of the variables written once, when a store is created; every other role is written
#: while training and never shares a chunk between two runs (README.md, Rules).
WRITTEN_ONCE_ROLES = frozenset({"coordinate", "run_config"})


def parameter_groups(version: int = CURRENT_VERSION) -> tuple[str, ...]:
    """Names of the parameter groups along the ``group`` dimension, in store order."""
    return tuple(load_schema(version)["parameter_groups"])


def known_extra_coordinates(version: int = CURRENT_VERSION) -> dict[str, dict[str, str]]:
    """The extra run coordinates the runner writes: name -> ``dtype``, ``units``,
    ``description``. Stores may hold others (readers ignore unknown ones)."""
    return dict(load_schema(version)["extra_run_coordinates"]["known"])


def optional_variables(version: int = CURRENT_VERSION) -> list[str]:
    """Variables added after their schema version first shipped: stores written before lack them,
    readers supply their fill value and the runner adds them when it opens such a store."""
    return [n for n, v in load_schema(version)["variables"].items() if v.get("optional", False)]


def checkpoint_format(version: int = CURRENT_VERSION) -> dict[str, Any]:
    """The checkpoint file format: ``path``, ``format_version``, ``serialisation`` and ``keys``
    (each key of the saved dict with its meaning)."""
    return dict(load_schema(version)["checkpoint"])


def role_of(name: str, version: int = CURRENT_VERSION) -> str:
    """The schema role of variable ``name``; an extra run coordinate (not named in the schema) is
    run configuration."""
    spec = load_schema(version)["variables"].get(name)
    return "run_config" if spec is None else spec["role"]


def status_codes(version: int = CURRENT_VERSION) -> dict[str, int]:
    """Map status name -> the int8 code stored in the ``status`` variable."""
    status = load_schema(version)["variables"]["status"]
    return dict(zip(status["flag_meanings"], status["flag_values"], strict=True))
