"""Specifications of text classification tasks and their tokenizer (typed, frozen, hashable).

This module must not import :mod:`runner.spec` (which imports it). The specs are frozen, so a
task spec can key the in-process caches of :mod:`runner.tasks.text`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from runner.strict import Strict

#: Hub datasets used when ``data`` is left out (the paper's IMDB and Yelp polarity tasks).
HUB_DEFAULTS: dict[str, str] = {
    "imdb": "stanfordnlp/imdb",
    "yelp_polarity": "fancyzhx/yelp_polarity",
}

#: Classes known without loading the data (negative / positive sentiment).
KNOWN_N_CLASSES: dict[str, int] = {"imdb": 2, "yelp_polarity": 2}

#: The training-only knobs of :class:`TokenizerSpec` (meaningless for a pre-built tokenizer).
TRAINING_KNOBS = ("vocab_size", "lowercase", "min_frequency")


class TokenizerSpec(Strict):
    """A pre-built tokenizer (``source``) or a WordPiece tokenizer trained on the train split."""

    source: str | None = Field(
        None,
        description="a local tokenizer directory or a hub name (transformers.AutoTokenizer); "
        "None: train a BERT-style WordPiece tokenizer on the task's whole train split",
    )
    vocab_size: PositiveInt = Field(
        30522,
        description="WordPiece vocabulary size to train (tokens, special tokens included; "
        "30522 as bert-base-uncased); the trained vocabulary may be smaller on a small corpus",
    )
    lowercase: bool = Field(True, description="lowercase (and strip accents) before training")
    min_frequency: PositiveInt = Field(
        2,
        description="a merge must occur at least this often in the corpus to enter the vocabulary "
        "(2, as transformers' BertWordPieceTokenizer)",
    )

    @model_validator(mode="after")
    def _knobs_only_when_training(self) -> TokenizerSpec:
        # Knobs at their defaults are no error: a stored spec (spec_json) spells every field out.
        fields = type(self).model_fields
        set_knobs = [k for k in TRAINING_KNOBS if getattr(self, k) != fields[k].default]
        if self.source is not None and set_knobs:
            raise ValueError(
                f"tokenizer.{set_knobs[0]} applies only to a tokenizer trained here, but "
                f"tokenizer.source = {self.source!r} loads a pre-built one; remove "
                f"tokenizer.{set_knobs[0]} or tokenizer.source"
            )
        return self


class TextClassificationTask(Strict):
    """Text classification data (IMDB, Yelp polarity, a Natural-Instructions task, any table).

    Sources (``data``): a hub dataset name (``datasets.load_dataset(name)``); a local directory
    holding one ``<split>.parquet|csv|jsonl|json`` file per split; a single local file
    (one split: needs ``test_fraction``); for ``natural_instructions`` a task JSON file.
    """

    name: Literal["imdb", "yelp_polarity", "natural_instructions", "text_classification"]
    data: str | None = Field(
        None,
        description="hub dataset name, or a local directory (<split>.parquet|csv|jsonl|json) or "
        "file; None: stanfordnlp/imdb for imdb, fancyzhx/yelp_polarity for yelp_polarity",
    )
    train_split: str = Field("train", min_length=1, description="split the subsets come from")
    test_split: str = Field("test", min_length=1, description="split evaluated on")
    text_column: str = Field("text", min_length=1, description="column holding the text")
    label_column: str = Field(
        "label",
        min_length=1,
        description="column holding the label: integers 0..k-1 are kept, strings are mapped to "
        "ids in sorted order",
    )
    test_fraction: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="for single-split sources only: fraction of the samples held out as the "
        "test split (seeded by split_seed, class-proportional)",
    )
    split_seed: int = Field(
        0, ge=0, description="seed of the train/test carve, the eval subset and the subset orders"
    )
    max_length: int = Field(
        256, ge=3, description="tokens per sample, [CLS] and [SEP] included (pad/truncate right)"
    )
    tokenizer: TokenizerSpec = TokenizerSpec()
    eval_subset: PositiveInt | None = Field(
        None,
        description="evaluate on a fixed, seeded, class-proportional subset of this many test "
        "samples; None: the full test split",
    )
    include_definition: bool = Field(
        True,
        description="natural_instructions only: prefix every input with the task's definition "
        "(instruction format, as the paper's case study); false: the input alone (the "
        "definition is the same in every sample, so a bag-of-words model gains nothing from it "
        "and its mean pooling dilutes the input with it)",
    )

    @model_validator(mode="after")
    def _source_is_known(self) -> TextClassificationTask:
        if self.data is None and self.name not in HUB_DEFAULTS:
            example = (
                "/path/to/task846_pubmedqa_classification.json"
                if self.name == "natural_instructions"
                else "a directory with train.parquet and test.parquet"
            )
            raise ValueError(
                f"task.data is required for task.name = {self.name!r} (there is no default "
                f"source); set task.data, e.g. {example}"
            )
        if self.name == "natural_instructions" and self.test_fraction is None:
            raise ValueError(
                "task.test_fraction is required for task.name = 'natural_instructions': a task "
                "file holds a single split; set e.g. test_fraction: 0.2"
            )
        if not self.include_definition and self.name != "natural_instructions":
            raise ValueError(
                f"task.include_definition applies to task.name = 'natural_instructions' only "
                f"(a task file with a definition), not {self.name!r}; remove "
                "task.include_definition"
            )
        if self.train_split == self.test_split:
            raise ValueError(
                f"task.train_split and task.test_split are both {self.train_split!r}; name two "
                "different splits (or use test_fraction with a single-split source)"
            )
        return self

    @property
    def source(self) -> str:
        """The data source: ``data``, or the hub default of the task name."""
        return self.data if self.data is not None else HUB_DEFAULTS[self.name]

    @property
    def n_classes(self) -> int | None:
        """Number of classes when known without loading (2 for imdb and yelp_polarity), else
        None (then it comes from the data: ``ClassificationData.n_classes``)."""
        return KNOWN_N_CLASSES.get(self.name)
