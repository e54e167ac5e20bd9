"""Run and grid specifications: the typed form of a grid YAML file.

A *run* is fully described by a :class:`RunSpec`; its id is a hash of the canonical JSON of that
spec, so the same spec always maps to the same run (and the same numbers). Settings that must be
shared by every run of a store (histogram cadence and edges, flush cadence, device) live in
:class:`StoreSettings` and cannot be swept.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
)

from runner.strict import Strict

_Strict = Strict


class ModularAdditionTask(_Strict):
    """All pairs (a, b) with 0 <= a, b < p, as the 7-token text "a + b % p = c"."""

    name: Literal["modular_addition"] = "modular_addition"
    p: int = Field(113, ge=2, le=4093, description="modulus (the paper uses 113)")
    train_fraction: float = Field(
        0.75, gt=0.0, lt=1.0, description="fraction of all p^2 pairs in the train split"
    )
    split_seed: int = Field(0, ge=0, description="seed of the one shuffle that makes the split")
    accuracy_over: Literal["residues", "vocabulary"] = Field(
        "residues",
        description="argmax over the p residue tokens, or over the whole vocabulary "
        "(the authors' code; a non-residue prediction then counts as wrong either way)",
    )

    @property
    def n_pairs(self) -> int:
        return self.p * self.p

    @property
    def n_train(self) -> int:
        """Size of the train split (samples), rounded down as the authors' code does (9576 for
        p = 113)."""
        return int(self.train_fraction * self.n_pairs)

    @property
    def vocab_size(self) -> int:
        """Tokens 0..p (numbers), then '+', '%', '=': p + 4 (117 for p = 113)."""
        return self.p + 4


class GPTModel(_Strict):
    """HF OpenAIGPT decoder built from config, head tied to the token embedding."""

    family: Literal["gpt"] = "gpt"
    width: PositiveInt = Field(128, description="n_embd (hidden size, units)")
    depth: PositiveInt = Field(1, description="n_layer")
    heads: PositiveInt = Field(4, description="n_head; must divide width")
    n_positions: PositiveInt = Field(128, description="position-embedding rows (authors: 128)")
    init_range: PositiveFloat = Field(0.02, description="std of the normal initialisation")

    @field_validator("heads")
    @classmethod
    def _heads_divide_width(cls, heads: int, info: ValidationInfo) -> int:
        width = info.data.get("width")
        if width is not None and width % heads:
            raise ValueError(
                f"width ({width}) must be a multiple of heads ({heads}); "
                "change model.width or model.heads"
            )
        return heads


class AdamWOptimizer(_Strict):
    name: Literal["adamw"] = "adamw"
    lr: PositiveFloat = Field(1e-3, description="learning rate (per step)")
    weight_decay: float = Field(1.0, ge=0.0, description="decoupled weight decay coefficient")
    betas: tuple[float, float] = Field((0.9, 0.98), description="Adam betas (authors: 0.9, 0.98)")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(betas)}")
        return betas


class RunSpec(_Strict):
    """Everything that determines one run's numbers."""

    task: ModularAdditionTask = ModularAdditionTask()
    n_samples: PositiveInt = Field(..., description="training-subset size n (samples)")
    seed: int = Field(0, ge=0, description="seed of the subset order and the initialisation")
    model: GPTModel = GPTModel()
    alpha: PositiveFloat = Field(1.0, description="every parameter is multiplied by alpha at init")
    optimizer: AdamWOptimizer = AdamWOptimizer()
    steps: PositiveInt = Field(..., description="optimiser steps (full batch)")
    eval_every: PositiveInt = Field(1, description="test evaluation cadence (steps)")

    @field_validator("n_samples")
    @classmethod
    def _n_fits_split(cls, n_samples: int, info: ValidationInfo) -> int:
        task = info.data.get("task")
        if task is not None and n_samples > task.n_train:
            raise ValueError(
                f"n_samples = {n_samples} exceeds the train split of {task.n_train} "
                f"samples (p = {task.p}, train_fraction = {task.train_fraction}); "
                "lower n_samples or raise task.train_fraction"
            )
        return n_samples

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def config_coordinates(self) -> dict[str, Any]:
        """Flat configuration values stored as coordinates along the store's ``run`` dimension."""
        return {
            "task": self.task.name,
            "model": self.model.family,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "width": self.model.width,
            "depth": self.model.depth,
            "heads": self.model.heads,
            "lr": self.optimizer.lr,
            "weight_decay": self.optimizer.weight_decay,
            "alpha": self.alpha,
            "steps_planned": self.steps,
            "eval_every": self.eval_every,
            # extra coordinates (allowed by the schema)
            "p": self.task.p,
            "train_fraction": self.task.train_fraction,
            "split_seed": self.task.split_seed,
            "beta1": self.optimizer.betas[0],
            "beta2": self.optimizer.betas[1],
        }


#: Parameter groups of the per-group norms and histograms, in store order.
PARAM_GROUPS: tuple[str, ...] = ("embedding", "attention", "mlp", "norm", "head")


class HistogramSettings(_Strict):
    every: PositiveInt = Field(100, description="histogram cadence (steps); step 1 is included")
    groups: tuple[str, ...] = Field(
        ("embedding", "attention", "mlp"), description="parameter groups to histogram"
    )
    bins: PositiveInt = Field(100, description="number of bins")
    range: tuple[float, float] = Field((-0.5, 0.5), description="[low, high] of the fixed edges")

    @field_validator("groups")
    @classmethod
    def _known_groups(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [g for g in groups if g not in PARAM_GROUPS]
        if unknown:
            raise ValueError(f"unknown group(s) {unknown}; choose from {list(PARAM_GROUPS)}")
        return groups

    @field_validator("range")
    @classmethod
    def _range_increasing(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(value)}")
        return value


class StoreSettings(_Strict):
    """Settings shared by every run of one store; they cannot be swept."""

    name: str = Field("grid", min_length=1, description="the grid's name")
    description: str = ""
    histogram: HistogramSettings = HistogramSettings()
    flush_every: PositiveInt = Field(
        500, description="steps between flushes of metrics and checkpoint (resume granularity)"
    )
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")


#: Top-level YAML keys that belong to StoreSettings (everything else is a RunSpec field).
STORE_KEYS = frozenset(StoreSettings.model_fields)
