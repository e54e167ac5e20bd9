"""The one interface the trainer sees: a classifier over a dict of feature tensors.

``model(features)`` returns logits of shape (batch, n_outputs); ``model.parameter_group(name)``
names the norm / histogram group of each parameter (``runner.spec.PARAM_GROUPS``). Which family
is built is decided here only, so the trainer never branches on the architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from runner.model_specs import BERTModel, GPTModel, LSTMModel, MLPModel
from runner.tasks.base import ClassificationData


class Classifier(nn.Module):
    n_outputs: int

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def parameter_group(self, name: str) -> str:  # pragma: no cover
        raise NotImplementedError


def build_model(
    spec: GPTModel | BERTModel | LSTMModel | MLPModel,
    data: ClassificationData,
    *,
    answer_token_head: bool = False,
) -> Classifier:
    """Build the spec's family for ``data``.

    ``answer_token_head`` (modular addition with a decoder): predict the answer as a token of the
    vocabulary with the LM head tied to the embedding, as the authors do; otherwise a classifier
    over ``data.n_classes``.
    """
    sequence_length = next(iter(data.train_features.values())).shape[1]
    padded = data.pad_token_id is not None
    if isinstance(spec, GPTModel):
        from runner.models.gpt import AnswerGPT, DecoderClassifier

        if answer_token_head:
            return AnswerGPT(spec, data.vocab_size)
        return DecoderClassifier(spec, data.vocab_size, data.n_classes)
    if isinstance(spec, BERTModel):
        from runner.models.bert import EncoderClassifier

        return EncoderClassifier(spec, data.vocab_size, data.n_classes, data.pad_token_id)
    if isinstance(spec, LSTMModel):
        from runner.models.lstm import LSTMClassifier

        return LSTMClassifier(spec, data.vocab_size, data.n_classes, data.pad_token_id)
    if isinstance(spec, MLPModel):
        from runner.models.mlp import MLPClassifier

        pooling = spec.pooling if spec.pooling != "auto" else ("mean" if padded else "concat")
        return MLPClassifier(
            spec, data.vocab_size, data.n_classes, sequence_length, pooling, data.pad_token_id
        )
    raise TypeError(f"unknown model spec {type(spec).__name__}")


def last_real_position(features: dict[str, torch.Tensor]) -> torch.Tensor:
    """Index of the last non-padding token of each row (right padding); L - 1 when unpadded."""
    ids = features["input_ids"]
    mask = features.get("attention_mask")
    if mask is None:
        return torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)
    return mask.sum(dim=1).clamp(min=1) - 1
