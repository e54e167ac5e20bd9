"""Model specifications: one class per family, selected in a grid by ``model.family``.

Every family is built from config (never downloaded), takes a ``dropout`` (default 0, the
grokking configuration) and is initialised by the framework's own initialiser; ``alpha`` rescales
afterwards (see ``RunSpec.alpha``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from runner.strict import Strict

_dropout = Field(
    0.0, ge=0.0, lt=1.0, description="dropout probability (residual, embedding, attention)"
)


class _Attention(Strict):
    # After the whole model, so a default ``heads`` is checked too.
    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.width % self.heads:
            raise ValueError(
                f"heads: width ({self.width}) must be a multiple of heads ({self.heads}); "
                "change model.width or model.heads"
            )
        return self


class GPTModel(_Attention):
    """HF OpenAIGPT decoder. On modular addition the head is the LM head tied to the token
    embedding, read at the answer position (the authors' model); on text a linear classifier
    reads the last non-padding position."""

    family: Literal["gpt"] = "gpt"
    width: PositiveInt = Field(128, description="n_embd (hidden size, units)")
    depth: PositiveInt = Field(1, description="n_layer")
    heads: PositiveInt = Field(4, description="n_head; must divide width")
    intermediate: PositiveInt | None = Field(
        None, description="MLP inner size (units); default 4 * width as HF OpenAIGPT"
    )
    n_positions: PositiveInt = Field(128, description="position-embedding rows (authors: 128)")
    init_range: PositiveFloat = Field(0.02, description="std of the normal initialisation")
    dropout: float = _dropout


class BERTModel(_Attention):
    """HF BertForSequenceClassification: encoder, pooler (dense + tanh on the first token) and a
    linear classifier, as the paper's IMDB / Yelp / instruction-tuning runs."""

    family: Literal["bert"] = "bert"
    width: PositiveInt = Field(128, description="hidden_size (units)")
    depth: PositiveInt = Field(1, description="num_hidden_layers")
    heads: PositiveInt = Field(4, description="num_attention_heads; must divide width")
    intermediate: PositiveInt = Field(
        512, description="intermediate_size (units); the paper keeps 512 for every width"
    )
    n_positions: PositiveInt = Field(512, description="max_position_embeddings")
    init_range: PositiveFloat = Field(0.02, description="std of the normal initialisation")
    dropout: float = _dropout


class LSTMModel(Strict):
    """Token embedding, a stacked LSTM, and a linear classifier on the last non-padding step."""

    family: Literal["lstm"] = "lstm"
    width: PositiveInt = Field(128, description="LSTM hidden size (units)")
    depth: PositiveInt = Field(2, description="stacked LSTM layers")
    embedding: PositiveInt | None = Field(None, description="embedding size; default width")
    dropout: float = _dropout

    @property
    def heads(self) -> int:  # the store's ``heads`` coordinate; 0 = not an attention model
        return 0


class MLPModel(Strict):
    """Token embedding, then ``depth`` hidden layers of ``width`` units (ReLU) and a linear
    classifier. Fixed-length unpadded inputs (modular addition) are concatenated; padded text is
    mean-pooled over its non-padding tokens (a bag of embeddings)."""

    family: Literal["mlp"] = "mlp"
    width: PositiveInt = Field(256, description="hidden units per layer")
    depth: PositiveInt = Field(2, description="hidden layers (depth + 1 linear layers in all)")
    embedding: PositiveInt = Field(128, description="embedding size")
    pooling: Literal["auto", "concat", "mean"] = Field(
        "auto", description="how token embeddings become one vector: auto = concat when the "
        "task is never padded, mean otherwise"
    )
    dropout: float = _dropout

    @property
    def heads(self) -> int:
        return 0


ModelSpec = Annotated[
    GPTModel | BERTModel | LSTMModel | MLPModel, Field(discriminator="family")
]
MODEL_FAMILIES = ("gpt", "bert", "lstm", "mlp")
