"""The search grid: a grid file whose data size is a range, and the runs the search may train.

A search grid is an ordinary grid file (:mod:`runner.grid`) in which the data size is given as
a range, ``n_samples: {min: 100, max: 2000}`` or ``data_fraction: {min: 0.05, max: 0.6}``,
instead of a value or a list. Every other field is fixed: the search chooses the sizes and the
seeds, so a list anywhere (a second swept field), ``seed``, ``variants`` and ``init_from`` are
refused with the field named. A ``data_fraction`` range is turned into sample counts of the
task's train split (rounded inward); the search works in integer ``n_samples`` either way and
each run records both coordinates, as every run does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.grid import SIZE_FIELDS, Grid, GridError, parse_grid, read_grid_text
from runner.spec import RunSpec, StoreSettings


@dataclass(frozen=True)
class SearchGrid:
    """A parsed search grid.

    Attributes
    ----------
    text
        The grid file's text (stored in the store's ``grid_yaml`` attribute).
    source
        Where it came from (for messages).
    size_field
        ``n_samples`` or ``data_fraction``: how the file gave the range.
    n_min, n_max
        The range in samples (integers, ``n_min < n_max``).
    settings
        The store-wide settings of the grid.
    """

    text: str
    source: str
    size_field: str
    n_min: int
    n_max: int
    settings: StoreSettings
    _document: dict

    def runs(self, pairs: list[tuple[int, int]]) -> list[RunSpec]:
        """The run specs of ``(n_samples, seed)`` pairs, in order (the grid's fixed fields)."""
        if not pairs:
            return []
        grid = _expand_pairs(self._document, pairs, self.source)
        by_key = {(r.resolved_n_samples(), r.seed): r for r in grid.runs}
        return [by_key[(int(n), int(seed))] for n, seed in pairs]


def _expand_pairs(document: dict, pairs: list[tuple[int, int]], source: str) -> Grid:
    doc = copy.deepcopy(document)
    doc["variants"] = [{"n_samples": int(n), "seed": int(seed)} for n, seed in pairs]
    return parse_grid(yaml.safe_dump(doc, sort_keys=False), source=source)


def load_search_grid(path: str | Path) -> SearchGrid:
    """Read a search grid file; raise :class:`~runner.grid.GridError` naming the field."""
    return parse_search_grid(read_grid_text(path), source=str(path))


def parse_search_grid(text: str, source: str = "<grid>") -> SearchGrid:
    """Parse a search grid (see the module docstring)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GridError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise GridError(f"{source}: a grid file must be a mapping of keys to values")
    ranges = [f for f in SIZE_FIELDS if isinstance(document.get(f), dict)]
    if not ranges:
        given = [f for f in SIZE_FIELDS if f in document]
        what = f"{given[0]}: gives {document[given[0]]!r}" if given else "no size is given"
        raise GridError(
            f"{source}: {what}; --search cds needs the size as a range, e.g. "
            "n_samples: {min: 100, max: 2000} or data_fraction: {min: 0.05, max: 0.6}"
        )
    if len([f for f in SIZE_FIELDS if f in document]) > 1:
        raise GridError(f"{source}: give one of n_samples and data_fraction, not both")
    field = ranges[0]
    for key, why in (
        ("seed", "the search chooses the seeds (0, 1, 2, ... at each size)"),
        ("variants", "a search has one configuration; write one grid per variant"),
        ("init_from", "a search trains from scratch"),
    ):
        if key in document:
            raise GridError(f"{source}: {key}: not allowed with --search cds: {why}; remove it")
    low, high = _range(document[field], field, source)
    document = {k: v for k, v in document.items() if k != field}
    # One probe run at the lower end: checks every fixed field, finds swept ones, and gives the
    # train split for a fraction range.
    probe_size = 1 if field == "data_fraction" else int(low)
    probe = _probe(document, probe_size, source)
    swept = [p for p in probe.sweep_paths if p not in ("label", "n_samples", "seed")]
    if swept:
        raise GridError(
            f"{source}: {swept[0]}: a list sweeps it, and --search cds searches only the size; "
            "give one value (one search per configuration)"
        )
    if field == "data_fraction":
        split = probe.runs[0].train_split_size()
        n_min, n_max = math.ceil(low * split), math.floor(high * split)
    else:
        split = probe.runs[0].train_split_size()
        n_min, n_max = int(low), int(high)
        if n_max > split:
            raise GridError(
                f"{source}: n_samples: max {n_max} exceeds the train split of {split} samples"
            )
    if not n_max - n_min >= 2:
        raise GridError(
            f"{source}: {field}: the range holds fewer than 3 whole sample counts "
            f"({n_min}..{n_max}); widen it"
        )
    _probe(document, n_max, source)  # the upper end is a valid run too
    return SearchGrid(text, source, field, n_min, n_max, probe.settings, document)


def _probe(document: dict, n_samples: int, source: str) -> Grid:
    try:
        return _expand_pairs(document, [(n_samples, 0)], source)
    except GridError as exc:
        raise GridError(str(exc).replace(" (variants[0])", "")) from None


def _range(value: dict, field: str, source: str) -> tuple[float, float]:
    """``(min, max)`` of a size range; GridError naming the field when malformed."""
    example = "{min: 100, max: 2000}" if field == "n_samples" else "{min: 0.05, max: 0.6}"
    if set(value) != {"min", "max"}:
        raise GridError(
            f"{source}: {field}: a search range has exactly the keys min and max, e.g. "
            f"{field}: {example} (got keys {sorted(value)})"
        )
    low, high = value["min"], value["max"]
    for name, bound in (("min", low), ("max", high)):
        numeric = isinstance(bound, (int, float)) and not isinstance(bound, bool)
        if field == "n_samples" and not (isinstance(bound, int) and bound >= 1 and numeric):
            raise GridError(
                f"{source}: {field}.{name}: give a whole number of samples >= 1, got {bound!r}"
            )
        if field == "data_fraction" and not (numeric and 0 < bound <= 1):
            raise GridError(f"{source}: {field}.{name}: give a fraction in (0, 1], got {bound!r}")
    if not low < high:
        raise GridError(f"{source}: {field}: min ({low}) must be below max ({high})")
    return float(low), float(high)
