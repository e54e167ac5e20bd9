"""Expand a grid YAML file into run specifications.

A grid file holds fixed fields and list-valued fields; the runs are the cartesian product of the
list-valued fields (in the order they appear in the file, first = outermost). A field whose value
is itself a list (``optimizer.betas``) is swept by giving a list of lists. Every problem is
reported with the YAML path of the offending key before anything is trained.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from runner.model_specs import MODEL_FAMILIES
from runner.spec import STORE_KEYS, TASK_NAMES, RunSpec, StoreSettings, deep_merge

#: The fields that give a run's data size (one of them per run).
SIZE_FIELDS = ("n_samples", "data_fraction")


class GridError(ValueError):
    """A grid file that cannot be expanded; the message names the YAML path and the fix."""


@dataclass(frozen=True)
class Grid:
    settings: StoreSettings
    runs: tuple[RunSpec, ...]
    text: str
    sweep_paths: tuple[str, ...]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Annotated, unions and Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    return []


def _field_annotation(model: type[BaseModel], path: tuple[str, ...]) -> Any:
    """Annotation of the field at ``path`` inside ``model`` (None when the path is unknown).

    Through a union (``model:`` of any family) the first member that has the key answers.
    """
    annotation: Any = model
    for key in path:
        fields = [m.model_fields[key] for m in _models_in(annotation) if key in m.model_fields]
        if not fields:
            return None
        annotation = fields[0].annotation
    return annotation


def _is_sequence_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence_type(a) for a in typing.get_args(annotation))
    return origin in (tuple, list) or annotation in (tuple, list)


def _flatten(mapping: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in mapping.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _nest(flat: dict[tuple[str, ...], Any]) -> dict:
    nested: dict = {}
    for path, value in flat.items():
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return nested


def _is_sweep(path: tuple[str, ...], value: Any) -> bool:
    if not isinstance(value, list):
        return False
    if _is_sequence_type(_field_annotation(RunSpec, path)):
        return bool(value) and all(isinstance(v, list) for v in value)
    return True


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _format_errors(
    error: ValidationError, sweep_index: dict[tuple[str, ...], int], prefix: str = ""
) -> list[str]:
    lines = []
    for item in error.errors():
        loc = _without_union_tags(tuple(str(p) for p in item["loc"]))
        msg = item["msg"].removeprefix("Value error, ")
        named = _FIELD_PREFIX.match(msg)
        if named:  # a whole-model check names its field as "field.path: message"
            loc, msg = (*loc, *named.group(1).split(".")), msg[named.end() :]
        # Point at the list element that produced the value, when the key was swept.
        where = _dotted(loc) or "(top level)"
        for path, index in sweep_index.items():
            if loc[: len(path)] == path:
                where = f"{_dotted(path)}[{index}]" + where[len(_dotted(path)) :]
        if item["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling" + _did_you_mean(loc)
        else:
            if "input" in item and not isinstance(item["input"], dict):
                msg += f" (got {item['input']!r})"
        lines.append(f"{prefix}{where}: {msg}")
    return lines


def _did_you_mean(loc: tuple[str, ...]) -> str:
    """`` (did you mean 'KEY'?)`` for an unknown key close to a known one at its level (the
    top level: every run field, store setting and ``variants``), else ''."""
    if len(loc) == 1:
        known = {*RunSpec.model_fields, *STORE_KEYS, "variants"}
    else:
        parent = _field_annotation(RunSpec, loc[:-1]) or _field_annotation(StoreSettings, loc[:-1])
        known = {key for m in _models_in(parent) for key in m.model_fields}
    close = difflib.get_close_matches(loc[-1], sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


_FIELD_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def _without_union_tags(loc: tuple[str, ...]) -> tuple[str, ...]:
    # pydantic puts the discriminator's value into the location (``model.bert.width``); the
    # YAML path has no such level.
    if len(loc) >= 2 and (loc[0], loc[1]) in _UNION_TAGS:
        return (loc[0], *loc[2:])
    return loc


_UNION_TAGS = {("model", family) for family in MODEL_FAMILIES} | {
    ("task", name) for name in TASK_NAMES
}


def _with_parents(runs: list[RunSpec], source: str) -> list[RunSpec]:
    """Runs whose ``init_from.parent`` names a run: the parents first (once each), then all."""
    parents: dict[str, RunSpec] = {}
    errors: list[str] = []
    for run in runs:
        try:
            parent = run.parent_spec()
        except ValidationError as exc:
            errors.extend(_format_errors(exc, {}, prefix="init_from.parent: "))
            continue
        if parent is not None:
            parents.setdefault(parent.run_id, parent)
    if errors:
        raise GridError(f"{source}: invalid grid\n  " + "\n  ".join(dict.fromkeys(errors)))
    own = {r.run_id for r in runs}
    return [p for i, p in parents.items() if i not in own] + runs


def _check_sizes(runs: list[RunSpec], source: str) -> None:
    """Data sizes that need the task's data to check (text tasks, data_fraction) resolve here."""
    errors = []
    for run in runs:
        try:
            n = run.resolved_n_samples()
            available = run.train_split_size()
        except (ValueError, OSError) as exc:
            errors.append(f"task: {exc}")
            continue
        if n > available:
            errors.append(
                f"n_samples: {n} exceeds the train split of {available} samples; "
                "lower n_samples or data_fraction"
            )
    if errors:
        raise GridError(f"{source}: invalid grid\n  " + "\n  ".join(dict.fromkeys(errors)))


def read_grid_text(path: str | Path) -> str:
    """A grid file's text; :class:`GridError` naming the file when it cannot be read."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise GridError(f"cannot read grid file {path}: {exc.strerror}") from None


def load_grid(path: str | Path) -> Grid:
    """Read and expand a grid YAML file."""
    return parse_grid(read_grid_text(path), source=str(path))


def with_stop_when(text: str, rule: str) -> str:
    """Grid ``text`` with ``stop_when: RULE`` for every run (``cds-run --stop-when``), appended
    as a line of its own so the store's ``grid_yaml`` shows it; unchanged when the grid sets
    ``stop_when`` itself (its parameters are kept)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # parse_grid reports it
    if isinstance(document, dict) and "stop_when" in document:
        return text
    return f"{text.rstrip()}\nstop_when: {rule}  # added by cds-run --stop-when {rule}\n"


def parse_grid(text: str, source: str = "<grid>") -> Grid:
    """Expand grid YAML ``text`` into a :class:`Grid`; raise :class:`GridError` on any problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GridError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise GridError(f"{source}: a grid file must be a mapping of keys to values")
    variants = document.pop("variants", None)
    if variants is None:
        return _expand(document, text, source)
    if (
        not isinstance(variants, list)
        or not variants
        or not all(isinstance(v, dict) for v in variants)
    ):
        raise GridError(
            f"{source}: variants: must be a non-empty list of mappings, each the fields that "
            "differ in that variant (e.g. - {label: batch128, batch_size: 128})"
        )
    runs: list[RunSpec] = []
    sweep_paths: dict[str, None] = {}
    settings = None
    for i, variant in enumerate(variants):
        if any(k in STORE_KEYS for k in variant):
            keys = sorted(k for k in variant if k in STORE_KEYS)
            raise GridError(
                f"{source}: variants[{i}]: {keys} are shared by the whole store; "
                "set them outside variants"
            )
        try:
            grid = _expand(deep_merge(document, variant), text, source)
        except GridError as exc:
            message = str(exc).replace("invalid grid", f"invalid grid (variants[{i}])", 1)
            raise GridError(message) from None
        settings = grid.settings
        runs.extend(r for r in grid.runs if r.run_id not in {x.run_id for x in runs})
        sweep_paths.update(dict.fromkeys(grid.sweep_paths))
    assert settings is not None
    return Grid(settings, tuple(runs), text, ("label", *sweep_paths))


def _expand(document: dict, text: str, source: str) -> Grid:
    """Expand one grid mapping (without variants) into its runs."""

    store_part = {k: v for k, v in document.items() if k in STORE_KEYS}
    run_part = {k: v for k, v in document.items() if k not in STORE_KEYS}

    errors: list[str] = []
    for path, value in _flatten(store_part).items():
        if isinstance(value, list) and not _is_sequence_type(
            _field_annotation(StoreSettings, path)
        ):
            errors.append(f"{_dotted(path)}: is shared by every run of a store and cannot be swept")
    try:
        settings = StoreSettings.model_validate(store_part)
    except ValidationError as exc:
        errors.extend(_format_errors(exc, {}))
        settings = None

    for size_field in SIZE_FIELDS:
        if isinstance(run_part.get(size_field), dict):
            errors.append(
                f"{size_field}: a range {{min, max}} is searched by cds-run --search cds "
                "(the search chooses the sizes); a grid takes one value or a list of values"
            )
    flat = _flatten(run_part)
    sweeps = {p: v for p, v in flat.items() if _is_sweep(p, v)}
    for p, values in sweeps.items():
        if not values:
            errors.append(
                f"{_dotted(p)}: an empty list sweeps over nothing; give at least one value"
            )
    if errors:
        raise GridError(f"{source}: invalid grid\n  " + "\n  ".join(errors))

    runs: list[RunSpec] = []
    seen_errors: list[str] = []
    sweep_paths = list(sweeps)
    for indices in itertools.product(*(range(len(sweeps[p])) for p in sweep_paths)):
        combo = dict(flat)
        sweep_index = {}
        for p, i in zip(sweep_paths, indices, strict=True):
            combo[p] = sweeps[p][i]
            sweep_index[p] = i
        try:
            runs.append(RunSpec.model_validate(_nest(combo)))
        except ValidationError as exc:
            for line in _format_errors(exc, sweep_index):
                if line not in seen_errors:
                    seen_errors.append(line)
    if seen_errors:
        raise GridError(f"{source}: invalid grid\n  " + "\n  ".join(seen_errors))

    runs = _with_parents(runs, source)
    _check_sizes(runs, source)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        repeated = [
            _dotted(p)
            for p, values in sweeps.items()
            if len({json.dumps(v, sort_keys=True) for v in values}) < len(values)
        ]
        where = ", ".join(f"{p}: repeats a value" for p in repeated) or (
            "init_from.parent: a parent equals a run of the grid"
        )
        raise GridError(
            f"{source}: the grid expands to duplicate runs ({where}); remove repeated sweep values"
        )
    assert settings is not None
    return Grid(settings, tuple(runs), text, tuple(_dotted(p) for p in sweep_paths))
