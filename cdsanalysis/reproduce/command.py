"""The command: run every manifest entry on its store and write the fragments and index.

``python -m cdsanalysis.reproduce STORE_DIR --out DIR [--only ENTRY,...] [--manifest PATH]
[--json]``

For each entry (in manifest order, or those of ``--only``):

- store absent under ``STORE_DIR``: **skipped**, with the reason and the ``cds-run`` command
  that trains it (never an error);
- store present but unusable (not a valid run store, or without the coordinates the entry
  needs): **error**, naming the entry and the manifest field; the other entries still run and
  the command exits 1;
- else **done**: ``DIR/<entry>.md`` (tables, CDS lines, warnings, the exact commands) and the
  entry's PNG figures ``DIR/<entry>_<figure>.png``.

``DIR/index.json`` holds every number (:data:`INDEX_KEYS`; per entry :data:`ENTRY_KEYS`,
``figure_warnings`` being the sentences noted under each figure drawn); with ``--only`` the
other entries of an ``index.json`` already there are kept;
``--json`` also prints it. Same stores, manifest and settings: the same files (the bootstraps
are seeded with ``AnalysisSettings.seed``). Exit codes: 0 (every entry done or skipped), 1 (an
entry's store is unusable), 2 (bad arguments or manifest).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cdsanalysis.reproduce.manifest import Entry, ManifestError, load_manifest

#: The default manifest, beside the package in a source checkout.
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "reproduce" / "manifest.yaml"
#: Keys of ``index.json``.
INDEX_KEYS = ("manifest", "store_dir", "entries")
#: Keys of each entry of ``index.json["entries"]``.
ENTRY_KEYS = (
    "kind",
    "store",
    "grid",
    "status",
    "reason",
    "train_command",
    "command",
    "settings",
    "options",
    "figures",
    "figures_skipped",
    "figure_warnings",
    "warnings",
    "result",
    "environments",
)


def _kinds() -> dict[str, Callable]:
    from cdsanalysis.reproduce import groups_table, modelwise, samplewise, ungrokking

    return {
        "samplewise": samplewise.run,
        "modelwise": modelwise.run,
        "groups_table": groups_table.run,
        "ungrokking": ungrokking.run,
    }


def _command(entry: Entry, store_dir: str, out: str) -> str:
    return f"python -m cdsanalysis.reproduce {store_dir} --out {out} --only {entry.name}"


def run_entry(entry: Entry, store_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Run one entry; return its ``index.json`` record (:data:`ENTRY_KEYS`)."""
    from cdsanalysis.environments import environment_counts, environment_warnings
    from cdsanalysis.notices import merge_warnings
    from cdsanalysis.reproduce.output import StoreUnusable, jsonable, select_runs
    from cdsanalysis.store import open_runs
    from cdsanalysis.validate import StoreValidationError

    record: dict[str, Any] = dict.fromkeys(ENTRY_KEYS)
    record.update(
        kind=entry.kind,
        store=entry.store,
        grid=entry.grid,
        train_command=entry.train_command(store_dir),
        command=_command(entry, str(store_dir), str(out_dir)),
        settings=entry.settings.to_dict(),
        options=jsonable(entry.options),
        figures={},
        figures_skipped={},
        figure_warnings={},
        warnings=[],
    )
    location = store_dir / entry.store
    if not location.exists():
        record["status"] = "skipped"
        record["reason"] = (
            f"store {entry.store} not found in {store_dir}: train it with {record['train_command']}"
        )
        return record
    try:
        ds = select_runs(open_runs(str(location)), entry.where, entry.store)
        outcome = _kinds()[entry.kind](entry, ds, out_dir)
    except StoreValidationError as exc:
        record.update(status="error", reason=f"{entry.name}: store: {entry.store}: {exc}")
        return record
    except StoreUnusable as exc:
        record.update(status="error", reason=f"{entry.name}: {exc}")
        return record
    environments = environment_counts(ds)
    record.update(
        status="done",
        figures=outcome.figures,
        figures_skipped=outcome.figures_skipped,
        figure_warnings=outcome.figure_warnings,
        warnings=merge_warnings(outcome.warnings, environment_warnings(environments)),
        result=outcome.result,
        environments=environments,
    )
    _write_fragment(entry, record, outcome.markdown, out_dir)
    return record


def _write_fragment(entry: Entry, record: dict, body: list[str], out_dir: Path) -> None:
    from cdsanalysis.environments import environment_line

    lines = [f"### {entry.name} ({entry.kind}, store `{entry.store}`)", "", *body, ""]
    if record["figures"]:
        lines += [f"![{name}]({file})" for name, file in record["figures"].items()] + [""]
    lines += [
        f"- Figure {name} not drawn: {why}" for name, why in record["figures_skipped"].items()
    ]
    lines += [f"- Warning: {w}" for w in record["warnings"]]
    if entry.analysis:
        settings = ", ".join(f"{k}={v}" for k, v in entry.analysis.items())
        lines.append(f"- Analysis settings (others at their defaults): {settings}")
    trained_on = environment_line(record["environments"])
    lines += [f"- {trained_on}"] if trained_on else []
    lines += [
        f"- Trained with: `{record['train_command']}`",
        f"- Regenerated with: `{record['command']}`",
        "",
    ]
    (out_dir / f"{entry.name}.md").write_text("\n".join(lines))


def reproduce(
    store_dir: Path, out_dir: Path, manifest: Path, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the entries of ``manifest`` (those named in ``only``) on the stores of
    ``store_dir``; write the fragments, the figures and ``index.json`` into ``out_dir``;
    return the index (:data:`INDEX_KEYS`). :class:`ManifestError` for a bad manifest or an
    unknown name in ``only``."""
    entries = load_manifest(manifest)
    order = [e.name for e in entries]
    if only:
        names = [e.name for e in entries]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ManifestError(f"--only: no entry {unknown[0]!r}; the entries are {names}")
        entries = [e for e in entries if e.name in only]
    out_dir.mkdir(parents=True, exist_ok=True)
    records = {e.name: run_entry(e, store_dir, out_dir) for e in entries}
    index = {
        "manifest": str(manifest),
        "store_dir": str(store_dir),
        "entries": _merged(out_dir / "index.json", records, order) if only else records,
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=2, sort_keys=False) + "\n")
    return index


def _merged(path: Path, records: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """``--only``: the entries of the ``index.json`` already at ``path`` with ``records``
    replacing theirs, in manifest order (entries no longer in the manifest are dropped). A run of
    some entries keeps the numbers of the others, which their fragments still show."""
    try:
        previous = json.loads(path.read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = {}
    merged = {**previous, **records}
    return {name: merged[name] for name in order if name in merged}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdsanalysis.reproduce",
        description="Regenerate every figure and table of REPRODUCTION.md from the run stores.",
    )
    parser.add_argument("store_dir", type=Path, help="directory holding the manifest's stores")
    parser.add_argument("--out", type=Path, required=True, help="directory for the outputs")
    parser.add_argument("--only", default=None, help="comma-separated entry names")
    parser.add_argument(
        "--manifest", type=Path, default=DEFAULT_MANIFEST, help="the manifest (YAML)"
    )
    parser.add_argument("--json", action="store_true", help="print index.json to stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (module docstring)."""
    args = _parser().parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        index = reproduce(args.store_dir, args.out, args.manifest, only)
    except (ManifestError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = False
    for name, record in index["entries"].items():
        if only and name not in only:
            continue  # kept from the index already there, not run now
        if record["status"] == "error":
            failed = True
            print(f"error: {record['reason']}", file=sys.stderr)
        elif record["status"] == "skipped":
            print(f"skipped {name}: {record['reason']}", file=sys.stderr)
        elif not args.json:
            files = [f"{name}.md", *record["figures"].values()]
            print(f"{name}: " + ", ".join(files))
    if args.json:
        print(json.dumps(index, indent=2))
    return 1 if failed else 0
