"""Run identity (runner/run_identity.py): ids are a versioned hash of the spec without defaults.

The literal ids below are a compatibility promise: every store a user has written is keyed by
them. A change here orphans every user's store (``cds-run`` would refuse it as another grid);
change them only together with a new ``RUN_ID_SCHEME`` and a migration (runner/migrate.py).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from pydantic import create_model
from pydantic_core import to_jsonable_python
from typer.testing import CliRunner

from runner.cli import app
from runner.grid import load_grid, parse_grid
from runner.run_identity import RUN_ID_SCHEME, legacy_hash
from runner.spec import (
    BERTModel,
    GPTModel,
    InitFrom,
    LSTMModel,
    MLPModel,
    ModularAdditionTask,
    NoiseSpec,
    OptimizerSpec,
    RunSpec,
    StopWhen,
)
from runner.tasks.text_spec import TextClassificationTask, TokenizerSpec

EXAMPLES = Path(__file__).parents[2] / "examples"

#: Scheme-2 ids of the quickstart grid (examples/quickstart.yaml, also the built-in default),
#: in grid order (n_samples 400, 900, 1600 outer; seed 0, 1 inner). Computed once, by hand.
QUICKSTART_IDS = [
    "9a76af8fac9b",
    "80dbc6657230",
    "bebefe4bfab1",
    "a48e29532bb5",
    "e0a03e9fa45b",
    "593153a4c823",
]
#: The ids the same grid had under scheme 1, as printed by ``cds-run --dry-run`` of the last
#: version before scheme 2 (commit 49c88cf): what ``legacy_run_id`` must keep recognising.
QUICKSTART_LEGACY_IDS = [
    "89433005ecce",
    "994c10f84b75",
    "b831fc3c20a3",
    "add0eba16927",
    "bf3341ecf6d9",
    "06e9f4b5ca42",
]
#: What run 0 of the quickstart hashes (its fields not at their defaults), written out by hand.
QUICKSTART_RUN0_IDENTITY = (
    '{"n_samples":400,"steps":1000,"task":{"name":"modular_addition","p":47}}'
)


def _quickstart() -> list[RunSpec]:
    return list(load_grid(EXAMPLES / "quickstart.yaml").runs)


def test_quickstart_ids_are_pinned():
    assert [r.run_id for r in _quickstart()] == QUICKSTART_IDS


def test_builtin_default_grid_prints_the_pinned_ids():
    result = CliRunner().invoke(app, ["--dry-run"])
    assert result.exit_code == 0, result.output
    printed = re.findall(r"^\s+\[\s*\d+\] ([0-9a-f]{12}) ", result.output, flags=re.MULTILINE)
    assert printed == QUICKSTART_IDS


def test_legacy_ids_of_the_quickstart_are_those_the_old_version_wrote():
    runs = _quickstart()
    assert [r.legacy_run_id() for r in runs] == QUICKSTART_LEGACY_IDS
    # and the spec_json such a version stored (the full canonical JSON of its fields; fields
    # added since, at their defaults, were not among them) alone gives the same ids
    assert [legacy_hash(r.legacy_canonical_json()) for r in runs] == QUICKSTART_LEGACY_IDS
    assert all("train_eval_subset" not in r.legacy_canonical_json() for r in runs)
    assert all("decay_scope" not in r.legacy_canonical_json() for r in runs)  # nested, too
    assert all('"train_eval_subset":null' in r.canonical_json() for r in runs)


def test_the_id_is_the_versioned_hash_of_the_reduced_spec():
    run = _quickstart()[0]
    assert run.identity_json() == QUICKSTART_RUN0_IDENTITY
    text = f"cds-run-id/{RUN_ID_SCHEME}\n{QUICKSTART_RUN0_IDENTITY}"
    assert run.run_id == hashlib.sha256(text.encode()).hexdigest()[:12]


# -- a new field with a default leaves every id unchanged --------------------------------------
def _with_new_fields():
    """RunSpec as a later version might have it: a new top-level field and a new optimiser
    field, both with defaults that keep the old behaviour."""
    optimizer_plus = create_model("OptimizerPlus", __base__=OptimizerSpec, nesterov=(bool, False))
    return create_model(
        "RunSpecPlus",
        __base__=RunSpec,
        label_smoothing=(float, 0.0),
        optimizer=(optimizer_plus, optimizer_plus()),
    )


def test_new_fields_with_defaults_leave_ids_unchanged():
    plus = _with_new_fields()
    for run in _quickstart():
        later = plus.model_validate(run.model_dump())
        assert later.run_id == run.run_id
        # scheme 1 hashed the full dump, so the same upgrade changed every id (the bug)
        assert later.legacy_run_id() != run.legacy_run_id()


def test_new_fields_set_away_from_their_defaults_change_the_id():
    plus = _with_new_fields()
    run = _quickstart()[0].model_dump()
    base = plus.model_validate(run).run_id
    assert plus.model_validate({**run, "label_smoothing": 0.1}).run_id != base
    nesterov = {**run, "optimizer": {**run["optimizer"], "nesterov": True}}
    assert plus.model_validate(nesterov).run_id != base


# -- every value that is not a default is part of the identity ---------------------------------
BASE = {"steps": 100, "n_samples": 400, "task": {"p": 47}}

#: One change away from BASE per field (dotted path -> value): each must change the id.
CHANGES = {
    "label": "variant",
    "task.p": 53,
    "task.train_fraction": 0.5,
    "task.split_seed": 1,
    "task.accuracy_over": "vocabulary",
    "data_fraction": 0.5,
    "n_samples": 401,
    "seed": 1,
    "model.width": 64,
    "model.depth": 2,
    "model.heads": 2,
    "model.intermediate": 256,
    "model.n_positions": 16,
    "model.init_range": 0.01,
    "model.dropout": 0.1,
    "alpha": 2.0,
    "alpha_scope": "weights",
    "optimizer.name": "sgd",
    "optimizer.lr": 0.01,
    "optimizer.weight_decay": 0.0,
    "optimizer.decay_towards": "init",
    "optimizer.decay_scope": "weights",
    "optimizer.betas": [0.9, 0.99],
    "optimizer.momentum": 0.5,
    "batch_size": 64,
    "train_eval_subset": 200,
    "loss": "mse",
    "noise.gradient": 0.01,
    "noise.gradient_anneal": 1.0,
    "noise.update": 0.01,
    "noise.weight": 0.01,
    "init_from.checkpoint": "weights.pt",
    "steps": 101,
    "eval_every": 5,
    "stop_when.eps": 0.95,
}


def _set(spec: dict, dotted: str, value) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    if dotted == "data_fraction":
        out.pop("n_samples")
    return out


def test_every_non_default_value_changes_the_id():
    base = RunSpec.model_validate(BASE).run_id
    ids = {"(base)": base}
    for path, value in CHANGES.items():
        ids[path] = RunSpec.model_validate(_set(BASE, path, value)).run_id
    assert len(set(ids.values())) == len(ids), "two different specs share an id"


def test_the_changes_cover_every_field():
    covered = {p.split(".")[0] for p in CHANGES} | {p for p in CHANGES}
    groups = {"": RunSpec, "task.": ModularAdditionTask, "model.": GPTModel,
              "optimizer.": OptimizerSpec, "noise.": NoiseSpec}  # fmt: skip
    tags = {"task.name", "model.family"}
    missing = [
        prefix + name
        for prefix, cls in groups.items()
        for name in cls.model_fields
        if prefix + name not in covered and prefix + name not in tags
    ]
    assert missing == [], f"add a change of {missing} to CHANGES"


def test_values_spelled_at_their_defaults_are_the_same_run():
    explicit = {
        **BASE,
        "seed": 0,
        "alpha": 1,  # an int for a float field
        "label": "",
        "batch_size": None,
        "optimizer": {"lr": "1e-3", "betas": (0.9, 0.98), "name": "adamw"},
        "model": {"family": "gpt", "width": 128, "intermediate": None},
        "task": {"name": "modular_addition", "p": 47, "train_fraction": 0.75},
        "noise": {},
    }
    assert RunSpec.model_validate(explicit).run_id == RunSpec.model_validate(BASE).run_id


def test_type_tags_stay_in_the_identity():
    # a nested spec's defaults depend on its type: the tag keeps two such specs apart
    gpt = RunSpec.model_validate({**BASE, "model": {"family": "gpt", "width": 64}})
    bert = RunSpec.model_validate({**BASE, "model": {"family": "bert", "width": 64}})
    lstm = RunSpec.model_validate({**BASE, "model": {"family": "lstm"}})
    mlp = RunSpec.model_validate({**BASE, "model": {"family": "mlp"}})
    assert len({gpt.run_id, bert.run_id, lstm.run_id, mlp.run_id}) == 4
    assert '"family":"bert"' in bert.identity_json()
    assert '"name":"modular_addition"' in gpt.identity_json()


def test_parent_overrides_are_part_of_the_childs_identity():
    child = {**BASE, "init_from": {"parent": {"n_samples": 1600}}}
    other = {**BASE, "init_from": {"parent": {"n_samples": 1200}}}
    a, b = RunSpec.model_validate(child), RunSpec.model_validate(other)
    assert a.run_id != b.run_id
    assert a.lineage() == a.parent_spec().run_id != b.lineage()


# -- stored specs: the source ids are recomputed from ---------------------------------------------
def _example_grids():
    grids = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        try:
            grids[path.name] = load_grid(path)
        except Exception as exc:  # text grids need their data; those are skipped
            grids[path.name] = exc
    return grids


def test_every_example_run_has_a_distinct_id_that_its_stored_spec_reproduces():
    loaded = 0
    for name, grid in _example_grids().items():
        if isinstance(grid, Exception):
            continue
        loaded += 1
        ids = [r.run_id for r in grid.runs]
        assert len(set(ids)) == len(ids), name
        for run in grid.runs:
            stored = RunSpec.model_validate_json(run.canonical_json())
            assert stored.run_id == run.run_id, name
            assert stored.legacy_run_id() == run.legacy_run_id(), name
    assert loaded >= 5


def test_a_pre_built_tokenizer_spec_reads_back_from_its_stored_form():
    # spec_json spells out every field, the tokenizer's training knobs (at their defaults) too
    run = RunSpec.model_validate(
        {**BASE, "task": {"name": "imdb", "tokenizer": {"source": "bert-base-uncased"}}}
    )
    assert RunSpec.model_validate_json(run.canonical_json()).run_id == run.run_id


# -- defaults are part of every id -------------------------------------------------------------
#: Every default of the spec classes. Ids leave defaults out, so changing one silently changes
#: what every existing id means (a resumed run would continue under another value); a changed
#: default needs a new RUN_ID_SCHEME and a migration. New fields may be added (not listed here).
PINNED_DEFAULTS = {
    RunSpec: {
        "label": "", "n_samples": None, "data_fraction": None, "seed": 0, "alpha": 1.0,
        "alpha_scope": "all", "batch_size": None, "loss": "cross_entropy", "init_from": None,
        "eval_every": 1,
        "task": {"name": "modular_addition", "p": 113, "train_fraction": 0.75, "split_seed": 0,
                 "accuracy_over": "residues"},
        "model": {"family": "gpt", "width": 128, "depth": 1, "heads": 4, "intermediate": None,
                  "n_positions": 128, "init_range": 0.02, "dropout": 0.0},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 1.0, "decay_towards": "zero",
                      "decay_scope": "all", "betas": [0.9, 0.98], "momentum": 0.0},
        "noise": {"gradient": 0.0, "gradient_anneal": 0.55, "update": 0.0, "weight": 0.0},
    },
    ModularAdditionTask: {"name": "modular_addition", "p": 113, "train_fraction": 0.75,
                          "split_seed": 0, "accuracy_over": "residues"},
    TextClassificationTask: {
        "data": None, "train_split": "train", "test_split": "test", "text_column": "text",
        "label_column": "label", "test_fraction": None, "split_seed": 0, "max_length": 256,
        "eval_subset": None, "include_definition": True,
        "tokenizer": {"source": None, "vocab_size": 30522, "lowercase": True,
                      "min_frequency": 2},
    },
    TokenizerSpec: {"source": None, "vocab_size": 30522, "lowercase": True, "min_frequency": 2},
    GPTModel: {"family": "gpt", "width": 128, "depth": 1, "heads": 4, "intermediate": None,
               "n_positions": 128, "init_range": 0.02, "dropout": 0.0},
    BERTModel: {"family": "bert", "width": 128, "depth": 1, "heads": 4, "intermediate": 512,
                "n_positions": 512, "init_range": 0.02, "dropout": 0.0},
    LSTMModel: {"family": "lstm", "width": 128, "depth": 2, "embedding": None, "dropout": 0.0},
    MLPModel: {"family": "mlp", "width": 256, "depth": 2, "embedding": 128, "pooling": "auto",
               "dropout": 0.0},
    OptimizerSpec: {"name": "adamw", "lr": 0.001, "weight_decay": 1.0, "decay_towards": "zero",
                    "decay_scope": "all", "betas": [0.9, 0.98], "momentum": 0.0},
    NoiseSpec: {"gradient": 0.0, "gradient_anneal": 0.55, "update": 0.0, "weight": 0.0},
    InitFrom: {"parent": None, "checkpoint": None, "store": None, "run": None,
               "optimizer_state": False},
    StopWhen: {"rule": "decided", "eps": 0.9, "window_steps": 1000, "window_fraction": 0.1,
               "memorisation_threshold": 0.99, "flat_window_steps": 2000,
               "flat_window_fraction": 0.5, "flat_tolerance": 0.02,
               "flat_measure": "range"},
}  # fmt: skip


@pytest.mark.parametrize("cls", list(PINNED_DEFAULTS), ids=lambda c: c.__name__)
def test_defaults_are_unchanged(cls):
    for name, pinned in PINNED_DEFAULTS[cls].items():
        assert name in cls.model_fields, f"{cls.__name__}.{name} was removed or renamed"
        default = cls.model_fields[name].get_default(call_default_factory=True)
        assert to_jsonable_python(default) == pinned, (
            f"{cls.__name__}.{name}: its default changed, which changes what existing run ids "
            "mean; keep it, or bump RUN_ID_SCHEME with a migration"
        )


def test_grid_yaml_spellings_of_one_value_share_an_id():
    text = "name: g\ntask: {{p: 23}}\nn_samples: 100\nsteps: 10\noptimizer: {{lr: {lr}}}\n"
    ids = {parse_grid(text.format(lr=lr)).runs[0].run_id for lr in ("1.0e-3", "0.001", "1e-3")}
    assert len(ids) == 1
