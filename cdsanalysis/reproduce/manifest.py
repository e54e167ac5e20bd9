"""The manifest of ``python -m cdsanalysis.reproduce``: which store makes which entry.

The manifest (``examples/reproduce/manifest.yaml``) is a YAML list of entries, each a mapping:

``name``
    The entry's name (letters, digits, ``_``, ``-``): its files are ``<name>.md`` and
    ``<name>_<figure>.png``, its numbers ``index.json["entries"][name]``.
``store``
    The run store's file name under ``STORE_DIR`` (e.g. ``fig1_modular.zarr``).
``grid``
    Its grid file under ``examples/reproduce/`` (informational: the store is trained with
    ``cds-run --grid examples/reproduce/<grid> --out STORE_DIR/<store> --executor processes``).
``kind``
    One of :data:`KIND_OPTIONS` (``samplewise``, ``modelwise``, ``groups_table``,
    ``ungrokking``); each kind's module documents what it computes and its options.
``analysis``
    Optional mapping of :class:`~cdsanalysis.settings.AnalysisSettings` overrides
    (``{eps_relative: 0.8, n_resamples: 500}``), applied with
    :meth:`~cdsanalysis.settings.SettingsBase.replace` as ``cds-search --analysis`` does, so an
    unknown or invalid field is refused naming it.
``where``
    Optional mapping ``{coordinate: value}``: only the runs matching every pair are analysed
    (as ``cds-analyze --where``).

and the options of its kind (:data:`KIND_OPTIONS`, defaults in each kind's module). An unknown
key, a missing required one, or a value of the wrong type is a :class:`ManifestError` naming the
entry and the key.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdsanalysis.reproduce.sensitivity import check_sensitivity
from cdsanalysis.settings import AnalysisSettings

#: The keys every entry may have (``analysis``, ``where`` and ``train_args`` are optional).
COMMON_KEYS = ("name", "store", "grid", "kind", "analysis", "where", "train_args")
REQUIRED_KEYS = ("name", "store", "grid", "kind")

#: Each kind's own option keys, with their defaults (``None``: required or absent).
KIND_OPTIONS: dict[str, dict[str, Any]] = {
    # histogram_run: a run id (or unique prefix); None = the sufficiency representative;
    # sensitivity: {field: [values]} of one AnalysisSettings field (reproduce.sensitivity)
    "samplewise": {"histogram_group": "embedding", "histogram_run": None, "sensitivity": None},
    "modelwise": {"by": "width"},
    "groups_table": {"rows": None, "columns": [], "baseline": None},
    "ungrokking": {"chance_tolerance": 0.05, "stay_tolerance": 0.05},
}
#: Options an entry of the kind must give.
REQUIRED_OPTIONS = {"groups_table": ("rows",)}

#: The command that trains an entry's store (``{grid}``: its path from the repository root,
#: ``{store_dir}``, ``{store}``, ``{train_args}``: the entry's, else :data:`TRAIN_ARGS`).
TRAIN_COMMAND = "cds-run --grid {grid} --out {store_dir}/{store} {train_args}"
#: ``cds-run`` options of an entry without ``train_args`` (a CPU grid on this machine's cores).
TRAIN_ARGS = "--executor processes"

_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ManifestError(ValueError):
    """The manifest is malformed; the message names the entry and the key."""


@dataclass(frozen=True)
class Entry:
    """One validated manifest entry: common fields, the settings with the ``analysis``
    overrides applied, and the kind's options with their defaults filled in."""

    name: str
    store: str
    grid: str
    kind: str
    settings: AnalysisSettings
    analysis: dict[str, Any] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    train_args: str = TRAIN_ARGS

    def train_command(self, store_dir: str | Path) -> str:
        """The ``cds-run`` command that trains this entry's store into ``store_dir``."""
        # posixpath.normpath: a grid outside examples/reproduce/ ("../text_regimes.yaml")
        # reads as the path a reader types, examples/text_regimes.yaml.
        grid = posixpath.normpath(f"examples/reproduce/{self.grid}")
        return TRAIN_COMMAND.format(
            grid=grid, store_dir=store_dir, store=self.store, train_args=self.train_args
        )


def _entry(raw: Any, position: int) -> Entry:
    where = f"manifest entry {position}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(raw).__name__}")
    if isinstance(raw.get("name"), str):
        where = f"manifest entry {raw['name']!r}"
    for key in REQUIRED_KEYS:
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ManifestError(f"{where}: {key}: required, a non-empty string")
    if not _NAME.fullmatch(raw["name"]):
        raise ManifestError(f"{where}: name: use letters, digits, '_' and '-' only")
    kind = raw["kind"]
    if kind not in KIND_OPTIONS:
        raise ManifestError(f"{where}: kind: must be one of {list(KIND_OPTIONS)}, got {kind!r}")
    allowed = (*COMMON_KEYS, *KIND_OPTIONS[kind])
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ManifestError(
            f"{where}: {unknown[0]}: not a key of a {kind} entry; the keys are {list(allowed)}"
        )
    for key in REQUIRED_OPTIONS.get(kind, ()):
        if raw.get(key) is None:
            raise ManifestError(f"{where}: {key}: required for a {kind} entry")
    analysis, selection = raw.get("analysis") or {}, raw.get("where") or {}
    for key, value in (("analysis", analysis), ("where", selection)):
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: {key}: expected a mapping of name: value")
    try:
        settings = AnalysisSettings().replace(**analysis)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: analysis: {exc}") from None
    train_args = raw.get("train_args", TRAIN_ARGS)
    if not isinstance(train_args, str) or not train_args.strip():
        raise ManifestError(
            f"{where}: train_args: the cds-run options as one string, e.g. "
            f"{TRAIN_ARGS!r}; leave it out for that default"
        )
    options = {key: raw.get(key, default) for key, default in KIND_OPTIONS[kind].items()}
    if "sensitivity" in options:
        try:
            options["sensitivity"] = check_sensitivity(options["sensitivity"], settings)
        except ValueError as exc:
            raise ManifestError(f"{where}: sensitivity: {exc}") from None
    return Entry(
        name=raw["name"],
        store=raw["store"],
        grid=raw["grid"],
        kind=kind,
        settings=settings,
        analysis=dict(analysis),
        where=dict(selection),
        options=options,
        train_args=" ".join(train_args.split()),
    )


def parse_manifest(text: str) -> list[Entry]:
    """The entries of a manifest's YAML text (:class:`ManifestError` if malformed)."""
    raw = yaml.safe_load(text)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ManifestError("the manifest must be a YAML list of entries")
    entries = [_entry(item, i) for i, item in enumerate(raw)]
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ManifestError(f"manifest entry {duplicates[0]!r}: name: used twice")
    return entries


def load_manifest(path: str | Path) -> list[Entry]:
    """The entries of the manifest file ``path``."""
    return parse_manifest(Path(path).read_text())
