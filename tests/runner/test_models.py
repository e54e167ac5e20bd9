"""Every model family behind the one interface, on modular addition and on real IMDB rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.models.base import build_model
from runner.spec import PARAM_GROUPS, RunSpec
from runner.trainer import build_run

FAMILIES = {
    "gpt": {"family": "gpt", "width": 32, "depth": 2, "heads": 4},
    "bert": {"family": "bert", "width": 32, "depth": 1, "heads": 4, "intermediate": 64},
    "lstm": {"family": "lstm", "width": 24, "depth": 2},
    "mlp": {"family": "mlp", "width": 48, "depth": 2, "embedding": 16},
}


def _imdb_task(directory) -> dict:
    return {"name": "imdb", "data": str(directory), "max_length": 48,
            "tokenizer": {"vocab_size": 600}}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_on_modular_addition(family):
    spec = RunSpec.model_validate(
        {"task": {"p": 11}, "n_samples": 50, "steps": 1, "model": FAMILIES[family]}
    )
    setup = build_run(spec, torch.device("cpu"))
    logits = setup.model(setup.train)
    # The decoder predicts the answer token over the vocabulary (the authors' head); the
    # others classify over the p residues.
    assert logits.shape == (50, 15 if family == "gpt" else 11)
    groups = {setup.model.parameter_group(n) for n, _ in setup.model.named_parameters()}
    assert groups <= set(PARAM_GROUPS) and "embedding" in groups


@pytest.mark.parametrize("family", FAMILIES)
def test_family_on_real_imdb_rows(family, imdb_dir, text_caches):
    spec = RunSpec.model_validate(
        {"task": _imdb_task(imdb_dir()), "n_samples": 40, "steps": 1, "model": FAMILIES[family]}
    )
    setup = build_run(spec, torch.device("cpu"))
    logits = setup.model(setup.train)
    assert logits.shape == (40, 2) and torch.isfinite(logits).all()
    groups = {setup.model.parameter_group(n) for n, _ in setup.model.named_parameters()}
    assert "head" in groups and groups <= set(PARAM_GROUPS)


def test_padding_does_not_change_a_decoder_or_lstm_prediction(imdb_dir, text_caches):
    # The classifier reads the last real token: more right padding must not move the logits.
    for family in ("gpt", "lstm", "mlp", "bert"):
        spec = RunSpec.model_validate(
            {"task": _imdb_task(imdb_dir()), "n_samples": 8, "steps": 1,
             "model": FAMILIES[family]}
        )
        setup = build_run(spec, torch.device("cpu"))
        setup.model.eval()
        short = {k: v[:, :24] for k, v in setup.train.items()}
        short["attention_mask"] = short["attention_mask"].clone()
        short["attention_mask"][:, 20:] = 0
        short["input_ids"] = short["input_ids"].masked_fill(short["attention_mask"] == 0, 0)
        longer = {k: torch.cat([v, torch.zeros_like(v)], dim=1) for k, v in short.items()}
        with torch.no_grad():
            torch.testing.assert_close(
                setup.model(short), setup.model(longer), rtol=1e-5, atol=1e-5, msg=family
            )


def test_gpt_intermediate_size_replaces_the_mlp():
    spec = RunSpec.model_validate(
        {"task": {"p": 11}, "n_samples": 20, "steps": 1,
         "model": {"width": 32, "heads": 4, "intermediate": 40}}
    )
    model = build_run(spec, torch.device("cpu")).model
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if ".mlp." in n}
    assert shapes["lm.transformer.h.0.mlp.c_fc.weight"] == (32, 40)
    assert shapes["lm.transformer.h.0.mlp.c_proj.weight"] == (40, 32)
    weights = model.lm.transformer.h[0].mlp.c_fc.weight
    assert 0.015 < weights.std().item() < 0.025  # initialised like the rest (std 0.02)


@pytest.mark.parametrize("scope", ["all", "weights"])
def test_alpha_multiplies_exactly_the_selected_parameters(scope):
    base = {"task": {"p": 11}, "n_samples": 20, "steps": 1, "model": FAMILIES["bert"]}
    reference = build_run(RunSpec.model_validate(base), torch.device("cpu")).model
    scaled = build_run(
        RunSpec.model_validate({**base, "alpha": 4.0, "alpha_scope": scope}), torch.device("cpu")
    ).model
    n_scaled = n_kept = 0
    for (name, p), q in zip(reference.named_parameters(), scaled.parameters(), strict=True):
        kept = scope == "weights" and ("LayerNorm" in name or name.endswith("bias"))
        torch.testing.assert_close(q, p if kept else 4.0 * p, msg=name, rtol=0, atol=0)
        n_kept += kept
        n_scaled += not kept
    assert n_scaled > 0 and (n_kept > 0) == (scope == "weights")


def test_build_model_is_seeded():
    spec = RunSpec.model_validate(
        {"task": {"p": 11}, "n_samples": 20, "steps": 1, "model": FAMILIES["lstm"]}
    )
    a, b = (build_run(spec, torch.device("cpu")).model for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    data = build_run(spec, torch.device("cpu"))
    assert build_model(spec.model, _as_data(data)).n_outputs == 11


def _as_data(setup):
    from runner.tasks.base import ClassificationData

    return ClassificationData(
        {k: v.numpy() for k, v in setup.train.items()}, setup.train_y.numpy(),
        {k: v.numpy() for k, v in setup.test.items()}, setup.test_y.numpy(),
        n_classes=11, vocab_size=15, pad_token_id=None,
    )


def test_every_family_trains_into_a_valid_store(tiny_grid, tmp_path, run_cli, imdb_dir,
                                                 text_caches):
    from cdsanalysis import open_runs, validate_store

    models = "[" + ", ".join(
        "{" + ", ".join(f"{k}: {v}" for k, v in m.items()) + "}" for m in FAMILIES.values()
    ) + "]"
    modular = tmp_path / "modular.yaml"
    modular.write_text(
        tiny_grid(steps=12, n_samples=40, flush_every=5).read_text()
        .replace("model: {width: 32, depth: 1, heads: 4, n_positions: 8}", f"model: {models}")
    )
    text = tmp_path / "imdb.yaml"
    text.write_text(
        f"name: imdb_tiny\ntask: {{name: imdb, data: '{imdb_dir()}', max_length: 48, "
        f"tokenizer: {{vocab_size: 600}}}}\nn_samples: 64\nmodel: {models}\nalpha: 3\n"
        "batch_size: 16\nsteps: 8\neval_every: 4\nflush_every: 5\n"
        "histogram: {every: 4, groups: [embedding, head], bins: 8}\n"
    )
    for grid in (modular, text):
        out = tmp_path / f"{grid.stem}.zarr"
        run_cli("--grid", str(grid), "--out", str(out), "--quiet",
                env={**__import__("os").environ, "CDS_CACHE_DIR": str(text_caches / "cds")})
        validate_store(out, deep=True)
        ds = open_runs(out)
        assert set(ds.model.values) == set(FAMILIES)
        assert (ds.status.values == "done").all()
        assert np.isfinite(ds.train_loss.values).all()
        head = ds.param_norm.sel(group="head").values
        # every family but the tied decoder head (modular) has its own head norm
        assert np.isfinite(head[ds.model.values != "gpt"]).all()
