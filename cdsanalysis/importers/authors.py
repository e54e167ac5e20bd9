r"""The seed paper's own training logs (Zhu et al. 2024, ../shared/PAPER_NOTES.md section 2).

Two formats, one run per file (``.log`` or ``.txt``; SOURCE is a file or a directory searched
recursively; a run is named by its path below SOURCE without the suffix):

- **modular trainer**: one line per step, step counted from 1 (step 1 = the initialisation, as
  the run store's)::

      INFO:root:Step: 1, Train Loss: 4.73, Test Loss: 4.74, Train Acc: 0.01, Test Acc: 0.0094, \
      L2 Norm: 55.2                                                  (one line in the log)

- **IMDB / Yelp trainers**: ``INFO:root:`` and a JSON object, step counted from 0 (stored as
  step + 1); ``Test Loss`` and ``Test Acc`` only on evaluation steps (every 1000 steps)::

      INFO:root:{"Step": 0, "Train Loss": 0.69, "Train Acc": 0.5, "L2 Norm": 310.4, \
      "Test Loss": 0.69, "Test Acc": 0.5}                            (one line in the log)

Numbers are read in full, exponents included (``1.2e-05`` is 1.2e-05; the authors' own parser
read it as 1.2), as are ``nan`` and ``inf``. Their IMDB/Yelp ``Train Loss`` and ``Train Acc`` are
one minibatch's and their ``Test Loss`` is the last test batch's only: the names map to the
schema's ``train_loss``, ``train_accuracy``, ``test_loss`` as logged (default table), so read
them with that in mind. Other lines (their banners, argument dumps) are skipped; a line that
starts like a step record but cannot be read is an error naming the file and line. The logs hold
no configuration: give it by ``--path-template``, ``--config`` or ``--set``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cdsanalysis.importers.base import ImportedRun, ScalarSeries

SUFFIXES = (".log", ".txt")
PREFIX = "INFO:root:"
#: One ``Key: number`` field of a modular-trainer line (any float syntax, nan and inf included).
_FIELD = re.compile(
    r"\s*(?P<key>[A-Za-z][A-Za-z0-9 _]*?)\s*:\s*"
    r"(?P<value>[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity))\s*$",
    re.IGNORECASE,
)
#: Where each format's step counter starts (the store's step 1 is the initialisation).
FIRST_STEP = {"modular": 1, "json": 0}


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def _modular_line(body: str, where: str) -> dict[str, float]:
    record = {}
    for part in body.split(","):
        found = _FIELD.fullmatch(part)
        if found is None:
            raise ValueError(f"{where}: cannot read {part.strip()!r} as 'Name: number'")
        record[found["key"].strip()] = float(found["value"])
    return record


def _json_line(body: str, where: str) -> dict[str, float]:
    try:
        record = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a JSON object")
    out = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: {key!r} is {value!r}, not a number")
        out[str(key)] = float(value)
    return out


def read_log(path: Path) -> tuple[str, dict[str, ScalarSeries]]:
    """The format (``modular`` or ``json``) and the series of one log file."""
    fmt: str | None = None
    points: dict[str, dict[int, tuple[float, int]]] = {}
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line.startswith(PREFIX):
                continue
            body = line[len(PREFIX) :].strip()
            where = f"{path}, line {number}"
            if body.startswith("{"):
                kind, record = "json", _json_line(body, where)
            elif body.startswith("Step:"):
                kind, record = "modular", _modular_line(body, where)
            else:
                continue
            if fmt is None:
                fmt = kind
            elif kind != fmt:
                raise ValueError(f"{where}: a {kind} record in a log of {fmt} records")
            if "Step" not in record:
                raise ValueError(f"{where}: no 'Step' in the record")
            step = record.pop("Step")
            if not step.is_integer():
                raise ValueError(f"{where}: Step {step!r} is not a whole number")
            stored = int(step) - FIRST_STEP[kind] + 1
            for key, value in record.items():
                seen = points.setdefault(key, {})
                if stored in seen and not (
                    seen[stored][0] == value or (np.isnan(value) and np.isnan(seen[stored][0]))
                ):
                    raise ValueError(
                        f"{where}: {key!r} at Step {int(step)} is {value!r}, but line "
                        f"{seen[stored][1]} has {seen[stored][0]!r}"
                    )
                seen.setdefault(stored, (value, number))
    if fmt is None:
        raise ValueError(f"{path}: no '{PREFIX}Step: ...' or '{PREFIX}{{...}}' lines")
    series = {}
    for key, by_step in points.items():
        steps = np.fromiter(by_step, dtype=np.int64, count=len(by_step))
        values = np.fromiter((v for v, _ in by_step.values()), dtype=np.float64, count=len(steps))
        series[key] = ScalarSeries(steps=steps, values=values, where=f"{path} ({key!r})")
    return fmt, series


class AuthorsImporter:
    """The seed paper's log lines (module docstring)."""

    kind = "authors"
    description = "the seed paper's training logs (INFO:root:Step: ... lines or JSON lines)"
    options: Mapping[str, str] = {}
    version = "1"

    def can_open(self, source: Path) -> bool:
        for path in _files(Path(source))[:5]:
            with open(path, encoding="utf-8", errors="replace") as lines:
                if any(line.startswith(PREFIX) for _, line in zip(range(50), lines, strict=False)):
                    return True
        return False

    def read_runs(self, source: Path, options: Mapping[str, Any]) -> Iterator[ImportedRun]:
        source = Path(source)
        files = _files(source)
        if not files:
            raise ValueError(f"{source}: no .log or .txt file found")
        for path in files:
            fmt, series = read_log(path)
            name = (
                path.stem
                if source.is_file()
                else path.relative_to(source).with_suffix("").as_posix()
            )
            yield ImportedRun(name=name, config={}, scalars=series, sources=(str(path),))


IMPORTER = AuthorsImporter()
