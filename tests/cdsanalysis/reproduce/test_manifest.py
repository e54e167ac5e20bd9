"""The manifest's parsing of the repository's own file and the training command it names."""

from pathlib import Path

import yaml

from cdsanalysis.reproduce.manifest import load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[3]


def test_train_command_names_the_grid_as_a_reader_types_it():
    entries = parse_manifest(
        "- {name: a, store: a.zarr, grid: fig1.yaml, kind: samplewise}\n"
        "- {name: b, store: b.zarr, grid: ../text_regimes.yaml, kind: samplewise}\n"
    )
    commands = [e.train_command("stores") for e in entries]
    assert commands[0].startswith("cds-run --grid examples/reproduce/fig1.yaml --out stores/a.zarr")
    assert commands[1].startswith("cds-run --grid examples/text_regimes.yaml --out stores/b.zarr")


def test_every_entry_of_the_repository_manifest_names_a_grid_that_exists():
    entries = load_manifest(ROOT / "examples" / "reproduce" / "manifest.yaml")
    assert len(entries) >= 10
    for entry in entries:
        grid = entry.train_command("s").split()[2]
        assert (ROOT / grid).is_file(), f"{entry.name}: {grid}"


def test_entries_whose_grid_is_a_search_range_are_trained_by_the_search():
    """A grid with a size range (``n_samples: {min, max}``) only trains with ``--search``; the
    command a reader is shown must say so."""
    for entry in load_manifest(ROOT / "examples" / "reproduce" / "manifest.yaml"):
        grid = yaml.safe_load((ROOT / entry.train_command("s").split()[2]).read_text())
        ranged = isinstance(grid.get("n_samples", grid.get("data_fraction")), dict)
        assert ranged == ("--search cds" in entry.train_command("s")), entry.name
