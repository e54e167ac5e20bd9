"""Run and grid specifications: the typed form of a grid YAML file.

A *run* is fully described by a :class:`RunSpec`; its id is a versioned hash of that spec without
the fields at their defaults (:mod:`runner.run_identity`), so the same spec always maps to the same
run (and the same numbers), and a field added later with a default leaves every id unchanged.
Settings that must be shared by every run of a store (histogram cadence and edges, flush cadence,
device) live in :class:`StoreSettings` and cannot be swept.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

import schemas
from runner import run_identity
from runner.model_specs import (  # noqa: F401  (re-exported: grids and tests name them here)
    BERTModel,
    GPTModel,
    LSTMModel,
    MLPModel,
    ModelSpec,
)
from runner.strict import Strict
from runner.tasks.text_spec import TextClassificationTask

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


TaskSpec = Annotated[ModularAdditionTask | TextClassificationTask, Field(discriminator="name")]
TASK_NAMES = (
    "modular_addition",
    "imdb",
    "yelp_polarity",
    "natural_instructions",
    "text_classification",
)


class OptimizerSpec(_Strict):
    """AdamW (decoupled decay, the grokking configuration), Adam or SGD (decay as an L2 term in
    the gradient). ``decay_towards: init`` pulls the weights towards their initial values instead
    of towards zero (seed 002): the decay term uses (w - w0) in place of w. ``decay_scope:
    weights`` exempts norm layers and biases from the decay (the usual BERT practice), with the
    predicate ``alpha_scope: weights`` uses (:func:`runner.trainer.in_scope`)."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: PositiveFloat = Field(1e-3, description="learning rate (per step)")
    weight_decay: float = Field(1.0, ge=0.0, description="weight decay coefficient")
    decay_towards: Literal["zero", "init"] = Field(
        "zero", description="the point weight decay pulls towards: zero or the initial weights"
    )
    decay_scope: Literal["all", "weights"] = Field(
        "all",
        description="which parameters weight decay applies to: all (the paper, LayerNorm gains "
        "and biases included) or weights (norm layers and biases get weight decay 0)",
    )
    betas: tuple[float, float] = Field(
        (0.9, 0.98), description="Adam / AdamW betas (authors' modular code: 0.9, 0.98)"
    )
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum (SGD only)")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(betas)}")
        return betas


#: The authors' name for the default optimiser spec, kept for readers of older code.
AdamWOptimizer = OptimizerSpec


class NoiseSpec(_Strict):
    """Noise interventions of seed 002, each a standard deviation (0 = off), drawn from a
    generator seeded by the run's seed and saved in every checkpoint (so resuming is exact)."""

    gradient: float = Field(
        0.0,
        ge=0.0,
        description="std of Gaussian noise added to every gradient element before "
        "the update, annealed as std / (1 + t)^(gradient_anneal / 2) (Neelakantan et al. 2015)",
    )
    gradient_anneal: float = Field(
        0.55, ge=0.0, description="annealing exponent of the gradient-noise variance"
    )
    update: float = Field(
        0.0,
        ge=0.0,
        description="std of Gaussian noise added to every parameter after each "
        "update (it stays in the weights)",
    )
    weight: float = Field(
        0.0,
        ge=0.0,
        description="std of a Gaussian perturbation of the weights for the training "
        "forward and backward pass only; removed before the update, never seen by test metrics",
    )

    @property
    def active(self) -> bool:
        return bool(self.gradient or self.update or self.weight)


class StopWhen(_Strict):
    """Stop a run early once its outcome for the CDS question is decided (``stop_when:
    decided``). The rule (:mod:`runner.deciding`) is checked at every flush (every
    ``flush_every`` steps) on all the steps flushed so far; a decided run stops at that flush.

    - **generalised**: test accuracy ``>= eps`` at every evaluation of the last ``max(
      window_steps, window_fraction x step)`` steps (the default fraction is the window of the
      analysis's default final accuracy, so its median then reaches ``eps`` too);
    - **insufficient (flat)**: memorised, test accuracy below ``eps`` and flat over the last
      ``max(flat_window_steps, flat_window_fraction x step)`` steps, with at least 3
      evaluations there; ``flat_measure`` says how each is read (:mod:`runner.deciding`):
      ``range`` (max - min of the evaluations ``<= flat_tolerance``, every memorisation
      measurement ``>= memorisation_threshold``, the last evaluation below ``eps``) or
      ``drift`` (the mean of the window's last third within ``flat_tolerance`` of its first
      third's, the median memorisation measurement ``>= memorisation_threshold``, the last
      third's median below ``eps - flat_tolerance``).
    """

    rule: Literal["decided"] = "decided"
    eps: float = Field(
        0.9, gt=0.0, le=1.0, description="test accuracy (fraction) a generalised run holds"
    )
    window_steps: PositiveInt = Field(
        1000, description="generalised: shortest window (steps) test accuracy held >= eps"
    )
    window_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="generalised: the window is at least this fraction of the steps so far",
    )
    memorisation_threshold: float = Field(
        0.99, gt=0.0, le=1.0, description="train accuracy (fraction) of a memorised run"
    )
    flat_window_steps: PositiveInt = Field(
        2000, description="insufficient: shortest window (steps) test accuracy stayed flat"
    )
    flat_window_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="insufficient: the flat window is at least this fraction of the steps so "
        "far (a late grokker is cut less often the larger it is)",
    )
    flat_tolerance: float = Field(
        0.02,
        ge=0.0,
        description="insufficient: test accuracy is flat when its range (max - min) over the "
        "flat window is at most this (fraction)",
    )
    flat_measure: Literal["range", "drift"] = Field(
        "range",
        description="insufficient: how flatness and memorisation are read over the flat "
        "window: 'range' (max - min <= flat_tolerance; every train measurement memorised) or "
        "'drift' (last third's mean within flat_tolerance of the first third's; the median "
        "train measurement memorised; robust to per-step evaluation noise and to transient "
        "train-accuracy spikes)",
    )


class InitFrom(_Strict):
    """Start from trained weights instead of a fresh initialisation (ungrokking: continue a
    grokked model on a smaller subset). Exactly one source:

    - ``parent``: fields that differ in the parent run, which is otherwise this run's own spec
      (without ``init_from``); the parent is added to the same grid and trained first;
    - ``checkpoint``: a checkpoint file written by ``cds-run`` (``_state/checkpoints/<run>.pt``)
      or a plain state dict of the same architecture;
    - ``store`` and ``run``: the final weights of run ``run`` (its id) in another store.

    The initial weights are taken as they are: ``alpha`` is not applied again.
    """

    parent: dict[str, Any] | None = None
    checkpoint: str | None = Field(None, min_length=1)
    store: str | None = Field(None, min_length=1)
    run: str | None = Field(None, min_length=1)
    optimizer_state: bool = Field(
        False,
        description="also restore the optimiser's state (cds-run checkpoints only); "
        "default: a fresh optimiser, as when a new training phase starts",
    )

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        given = [k for k in ("parent", "checkpoint", "store") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of init_from.parent, init_from.checkpoint or "
                f"init_from.store (with init_from.run); got {given or 'none'}"
            )
        if (self.store is None) != (self.run is None):
            raise ValueError("init_from.store and init_from.run go together; give both")
        if self.parent is not None and "init_from" in self.parent:
            raise ValueError("init_from.parent cannot itself have an init_from")
        return self


class RunSpec(_Strict):
    """Everything that determines one run's numbers."""

    label: str = Field(
        "",
        description="a name for the run's variant (grids with variants:), stored as a "
        "coordinate for grouping; part of the run's identity",
    )
    task: TaskSpec = ModularAdditionTask()
    n_samples: PositiveInt | None = Field(
        None, description="training-subset size n (samples); or give data_fraction"
    )
    data_fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="training-subset size as a fraction of the task's "
        "train split (rounded to the nearest sample); or give n_samples",
    )
    seed: int = Field(0, ge=0, description="seed of the subset order and the initialisation")
    model: ModelSpec = GPTModel()
    alpha: PositiveFloat = Field(1.0, description="parameters are multiplied by alpha at init")
    alpha_scope: Literal["all", "weights"] = Field(
        "all",
        description="which parameters alpha multiplies: all (the paper, LayerNorm gains "
        "and biases included) or weights (norm layers and biases left unscaled)",
    )
    optimizer: OptimizerSpec = OptimizerSpec()
    batch_size: PositiveInt | None = Field(
        None,
        description="minibatch size (samples); none = full batch. Minibatches reshuffle "
        "every epoch with a generator seeded by (seed, epoch)",
    )
    train_eval_subset: PositiveInt | None = Field(
        None,
        description="minibatch runs: measure train_set_accuracy and train_set_loss (at the "
        "test cadence) on at most this many training samples, a fixed seeded class-proportional "
        "subset of the training subset when it is larger; None: the whole training subset. "
        "Full-batch runs do not measure them (their train metrics are the whole training subset)",
    )
    loss: Literal["cross_entropy", "mse"] = Field(
        "cross_entropy",
        description="cross-entropy, or the squared error between the softmax "
        "and the one-hot label (seed 002)",
    )
    noise: NoiseSpec = NoiseSpec()
    init_from: InitFrom | None = None
    steps: PositiveInt = Field(..., description="optimiser steps")
    eval_every: PositiveInt = Field(1, description="test evaluation cadence (steps)")
    stop_when: StopWhen | None = Field(
        None,
        description="stop early once the outcome is decided (stop_when: decided, or a mapping "
        "of StopWhen's parameters); none: train every step. Part of the run's identity when set",
    )

    @model_validator(mode="after")
    def _one_size(self) -> RunSpec:
        if (self.n_samples is None) == (self.data_fraction is None):
            raise ValueError(
                "n_samples: give exactly one of n_samples (a count) or data_fraction (a fraction "
                "of the train split)"
            )
        modular = isinstance(self.task, ModularAdditionTask)
        if modular and self.n_samples is not None and self.n_samples > self.task.n_train:
            raise ValueError(
                f"n_samples: n_samples = {self.n_samples} exceeds the train split of "
                f"{self.task.n_train} samples (p = {self.task.p}, train_fraction = "
                f"{self.task.train_fraction}); lower n_samples or raise task.train_fraction"
            )
        return self

    @field_validator("stop_when", mode="before")
    @classmethod
    def _stop_rule_by_name(cls, value: Any) -> Any:
        # ``stop_when: decided`` (the rule's name alone) takes every parameter's default
        if isinstance(value, str):
            return {"rule": value}
        if isinstance(value, dict) and "rule" not in value:
            return {"rule": "decided", **value}
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _default_family(cls, value: Any) -> Any:
        # ``family`` may be left out for the default decoder (grids written before the zoo)
        if isinstance(value, dict) and "family" not in value:
            return {"family": "gpt", **value}
        return value

    @field_validator("task", mode="before")
    @classmethod
    def _default_task(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:
            return {"name": "modular_addition", **value}
        return value

    def canonical_json(self) -> str:
        """Every field, defaults included, as compact sorted JSON: the store's ``spec_json``
        (readable without knowing this version's defaults, and what ids are recomputed from)."""
        return run_identity.canonical(self.model_dump(mode="json"))

    def identity_json(self) -> str:
        """What the run id hashes: the spec without the fields at their defaults.

        ``init_from.parent`` is kept as written (overrides, not the parent's id): two specs that
        differ anywhere keep different identities, so every store of scheme 1 re-keys one to one.
        """
        return run_identity.canonical(run_identity.without_defaults(self))

    @property
    def run_id(self) -> str:
        """The run's id under the current scheme (``run_identity.RUN_ID_SCHEME``)."""
        return run_identity.hash_identity(self.identity_json())

    def legacy_canonical_json(self) -> str:
        """The ``spec_json`` a version of scheme 1 wrote for this spec: :meth:`canonical_json`
        without the fields added since (``run_identity.FIELDS_AFTER_SCHEME_1``) at their
        defaults."""
        return run_identity.canonical(run_identity.legacy_dump(self))

    def legacy_run_id(self) -> str:
        """The id scheme 1 gave this spec (the hash of :meth:`legacy_canonical_json`). Equal to
        the id a scheme-1 store holds while RunSpec's other fields are those it had then; to
        recognise a stored run, hash its stored ``spec_json`` (``run_identity.legacy_hash``)."""
        return run_identity.legacy_hash(self.legacy_canonical_json())

    def train_split_size(self) -> int:
        """Samples in the task's train split (text tasks read their labels to count them)."""
        if isinstance(self.task, ModularAdditionTask):
            return self.task.n_train
        from runner.tasks.text import train_split_size

        return train_split_size(self.task)

    def resolved_n_samples(self) -> int:
        """The training-subset size in samples, whichever way it was given."""
        if self.n_samples is not None:
            return self.n_samples
        from runner.tasks.pruning import subset_size

        return subset_size(self.train_split_size(), fraction=self.data_fraction)

    def is_minibatch(self) -> bool:
        """Whether a step sees a minibatch (``batch_size`` below the training-subset size)
        rather than the whole training subset."""
        return self.batch_size is not None and self.batch_size < self.resolved_n_samples()

    def train_set_samples(self) -> int:
        """Training samples ``train_set_accuracy`` is measured on: 0 for a full-batch run (not
        measured), else the training-subset size capped at ``train_eval_subset``."""
        if not self.is_minibatch():
            return 0
        n_samples = self.resolved_n_samples()
        cap = self.train_eval_subset
        return n_samples if cap is None else min(cap, n_samples)

    def parent_spec(self) -> RunSpec | None:
        """The parent run of ``init_from.parent`` (this spec with the parent's overrides)."""
        if self.init_from is None or self.init_from.parent is None:
            return None
        base = self.model_dump(mode="json", exclude={"init_from"})
        return RunSpec.model_validate(_merge(base, self.init_from.parent))

    def lineage(self) -> str:
        """Where the initial weights come from: '' (fresh), a parent run id, a checkpoint path,
        or 'STORE#RUN'."""
        source = self.init_from
        if source is None:
            return ""
        if source.parent is not None:
            parent = self.parent_spec()
            assert parent is not None
            return parent.run_id
        if source.checkpoint is not None:
            return source.checkpoint
        return f"{source.store}#{source.run}"

    def config_coordinates(self) -> dict[str, Any]:
        """Flat configuration values stored as coordinates along the store's ``run`` dimension.

        The same keys for every task and model (0, NaN or '' where a value does not apply), so
        runs of different kinds can share a store.
        """
        modular = isinstance(self.task, ModularAdditionTask)
        n_samples = self.resolved_n_samples()
        model = self.model
        return {
            "task": self.task.name,
            "model": model.family,
            "n_samples": n_samples,
            "seed": self.seed,
            "width": model.width,
            "depth": model.depth,
            "heads": model.heads,
            "lr": self.optimizer.lr,
            "weight_decay": self.optimizer.weight_decay,
            "alpha": self.alpha,
            "steps_planned": self.steps,
            "eval_every": self.eval_every,
            # extra coordinates (allowed by the schema)
            # the fraction the grid asked for (so ``--where data_fraction=0.55`` matches); a run
            # sized by n_samples asked for n_samples / split size, which is also what it got
            "data_fraction": (
                self.data_fraction
                if self.data_fraction is not None
                else n_samples / self.train_split_size()
            ),
            "data_fraction_realised": n_samples / self.train_split_size(),
            "p": self.task.p if modular else 0,
            "train_fraction": self.task.train_fraction if modular else float("nan"),
            "split_seed": self.task.split_seed,
            "optimizer": self.optimizer.name,
            "beta1": self.optimizer.betas[0],
            "beta2": self.optimizer.betas[1],
            "decay_towards": self.optimizer.decay_towards,
            "decay_scope": self.optimizer.decay_scope,
            "batch_size": self.batch_size or 0,
            "loss": self.loss,
            "dropout": model.dropout,
            "alpha_scope": self.alpha_scope,
            "gradient_noise": self.noise.gradient,
            "update_noise": self.noise.update,
            "weight_noise": self.noise.weight,
            "parent_run": self.lineage(),
            "label": self.label,
        }


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied, mappings merged key by key at every depth."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _merge(base: dict, overrides: dict) -> dict:
    merged = deep_merge(base, overrides)
    # A size given one way in the child and the other way in the parent: the parent's wins.
    if "n_samples" in overrides and "data_fraction" not in overrides:
        merged["data_fraction"] = None
    if "data_fraction" in overrides and "n_samples" not in overrides:
        merged["n_samples"] = None
    return merged


#: Parameter groups of the per-group norms and histograms, in store order (from the schema).
PARAM_GROUPS: tuple[str, ...] = schemas.parameter_groups()


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
    eval_batch_size: PositiveInt = Field(
        2048,
        description="samples per forward pass when evaluating the test set (and a minibatch "
        "run's training set; memory only: the metrics are over the whole set or its subset "
        "whatever this is)",
    )
    vocab_tables: bool = Field(
        True,
        description="1-layer answer-position GPT (modular addition): compute keys, values, query "
        "and residual once per (vocabulary token, position) and gather them per sample, about "
        "2x faster per step. The same function summed in another order: metrics differ from "
        "the plain forward by float rounding (~1e-7); false gives the plain forward bit for bit",
    )
    measure_in_background: bool = Field(
        True,
        description="take each step's test evaluation, norms and histograms on a worker thread, "
        "from a copy of the weights before the update, while the training thread updates: the "
        "same numbers bit for bit, at almost no cost to the step when a core (or a GPU) is "
        "spare, for one extra copy of the weights in memory; false measures inline",
    )


#: Top-level YAML keys that belong to StoreSettings (everything else is a RunSpec field).
STORE_KEYS = frozenset(StoreSettings.model_fields)
