"""The contract every importer implements, so that a new log format is one new file.

An importer turns runs logged elsewhere (TensorBoard event files, W&B history exports, tidy tables,
the seed paper's log lines) into :class:`ImportedRun` records. One shared writer (not here) maps
metric names to the schema's, lays sparse steps onto the dense ``step`` axis and writes the store
atomically, so the per-format modules never touch Zarr.

Each importer module defines a module-level ``IMPORTER`` satisfying :class:`Importer` and is listed
in the registry (``cdsanalysis.importers.registry``), in the style of xarray's backend entrypoints:
``can_open`` is a cheap guess used to suggest a kind, ``read_runs`` does the work.

Steps, one rule for every importer
----------------------------------
The store's ``step`` axis is 1-based: step 1 is the first logged point (in ``cds-run``'s stores
the initialisation, before any update). An importer returns steps *as the source numbers them*
(TensorBoard's ``global_step``, W&B's ``_step`` or ``step_column``, a table's ``step``), except
where the format itself fixes the convention and the importer says so (the ``authors`` logs:
their modular trainer counts from 1, their JSON lines from 0, and the importer returns the store's
steps for both). The writer then adds ``ImportOptions.step_offset`` (``--step-offset``, default
0) once, to every scalar and histogram step, and refuses a step below 1 with the fix (``pass
--step-offset 1`` for a source that counts from 0, as W&B's ``_step`` does). The TensorBoard and
W&B readers also take a ``step_offset`` option for callers of ``read_runs`` outside the writer;
``cds-analyze import`` refuses it as an ``--option`` so that an offset is never applied twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ScalarSeries:
    """One metric of one run as logged: strictly the steps that were written, nothing filled in.

    ``steps`` are int64 training steps (1-based as the schema's ``step`` axis, or converted by the
    importer, which says how in its docstring); ``values`` are float64 of the same length.
    ``where`` names the file (and line or column) the series came from, for error messages.
    """

    steps: np.ndarray
    values: np.ndarray
    where: str

    def __post_init__(self) -> None:
        if self.steps.shape != self.values.shape or self.steps.ndim != 1:
            raise ValueError(
                f"{self.where}: steps {self.steps.shape} and values {self.values.shape} must be "
                "1-D arrays of the same length"
            )


@dataclass(frozen=True)
class HistogramSeries:
    """Weight histograms of one parameter group as logged (TensorBoard histograms, for example).

    ``counts[i]`` are the bucket counts at ``steps[i]`` over the buckets bounded by
    ``edges[i]`` (one more edge than counts); the writer rebins onto the schema's bins.
    """

    steps: np.ndarray
    edges: list[np.ndarray]
    counts: list[np.ndarray]
    where: str


@dataclass(frozen=True)
class ImportedRun:
    """One run read from a source, before metric names are mapped to the schema's.

    ``name`` identifies the run within its source (a directory, a W&B run id, a table's ``run``
    value); ``config`` holds the run's configuration as typed values (ints as ints), from the
    source's own config, a sidecar file or a path template; ``scalars`` maps the source's metric
    names to their series; ``sources`` lists the files read, for provenance.
    """

    name: str
    config: Mapping[str, Any]
    scalars: Mapping[str, ScalarSeries]
    histograms: Mapping[str, HistogramSeries] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


class Importer(Protocol):
    """What the registry needs from one format's module."""

    kind: str
    """The name given on the command line: ``cds-analyze import KIND SOURCE``."""

    description: str
    """One line for ``cds-analyze import --help``."""

    options: Mapping[str, str]
    """The ``--option KEY=VALUE`` keys it takes, each with one line of help (may be empty)."""

    def can_open(self, source: Path) -> bool:
        """A cheap guess (suffixes, a peek at the first bytes) that this format is at ``source``."""

    def read_runs(self, source: Path, options: Mapping[str, Any]) -> Iterator[ImportedRun]:
        """Yield the runs at ``source``, one at a time, so a large import never holds them all.

        Raises ``ValueError`` naming the file and line or column for input it cannot read.
        """
