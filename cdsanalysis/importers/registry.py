"""Which module reads which log format: ``cds-analyze import KIND`` looks ``KIND`` up here.

Modules are imported only when their kind is used, so that a format's optional dependency (the
``tensorboard`` reader, ``wandb`` for the online API) is needed only by those who import that
format, and a missing one is reported by name with the command that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdsanalysis.importers.base import Importer

#: kind (as given on the command line) -> module defining ``IMPORTER``.
IMPORTERS: dict[str, str] = {
    "tensorboard": "cdsanalysis.importers.tensorboard",
    "wandb": "cdsanalysis.importers.wandb",
    "table": "cdsanalysis.importers.table",
    "authors": "cdsanalysis.importers.authors",
}

#: Third-party packages an importer may need, with what installs them.
_INSTALL_HINTS = {
    "tensorboard": 'pip install "cds" (it depends on tensorboard) or pip install tensorboard',
    "wandb": 'pip install "cds[wandb]"',
    "pyarrow": "pip install pyarrow",
}


class ImporterError(ValueError):
    """An unknown kind, or an importer that cannot be loaded here; the message says why."""


def kinds() -> list[str]:
    """The kinds ``cds-analyze import`` accepts."""
    return list(IMPORTERS)


def get_importer(kind: str) -> Importer:
    """The importer of ``kind``, its module imported now.

    Raises
    ------
    ImporterError
        For an unknown kind (naming the known ones), a module that is not there, or a module
        whose dependency is not installed (naming the package and how to install it).
    """
    if kind not in IMPORTERS:
        raise ImporterError(f"unknown import kind {kind!r}; choose one of {', '.join(IMPORTERS)}")
    module_name = IMPORTERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if exc.name == module_name:
            raise ImporterError(
                f"the {kind!r} importer ({module_name}) is not part of this installation"
            ) from None
        hint = _INSTALL_HINTS.get(missing, f"pip install {missing}")
        raise ImporterError(
            f"the {kind!r} importer needs the package {missing!r}, which is not installed: {hint}"
        ) from None
    importer = getattr(module, "IMPORTER", None)
    if importer is None:
        raise ImporterError(f"{module_name} defines no IMPORTER")
    return importer


#: ``read_runs`` options that ``cds-analyze import`` sets through its own flags, never ``--option``.
_OWN_FLAGS = {"step_offset": "--step-offset N"}


def check_options(kind: str, options: Mapping[str, Any]) -> None:
    """Refuse ``--option`` keys the importer of ``kind`` does not take (a typo would otherwise be
    ignored silently), naming those it takes; and ``step_offset``, which ``--step-offset`` gives
    (the writer applies it once; both would shift the steps twice).

    Raises
    ------
    ImporterError
        Naming the key and what to give instead.
    """
    accepted = getattr(get_importer(kind), "options", {})
    for key in options:
        if key in _OWN_FLAGS:
            raise ImporterError(
                f"--option {key}: give {_OWN_FLAGS[key]} instead (the writer adds it once, to "
                "every importer's steps and histograms)"
            )
        if key not in accepted:
            takes = ", ".join(f"{k} ({v})" for k, v in accepted.items()) or "no --option"
            raise ImporterError(f"--option {key}: the {kind!r} importer takes {takes}")


def guess_kinds(source: Path) -> list[str]:
    """The kinds whose ``can_open`` accepts ``source`` (importers that cannot load are skipped)."""
    found = []
    for kind in IMPORTERS:
        try:
            if get_importer(kind).can_open(Path(source)):
                found.append(kind)
        except ImporterError:
            continue
    return found
