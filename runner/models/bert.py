"""HF ``BertForSequenceClassification`` built from config: the paper's encoder for IMDB, Yelp and
instruction tuning (encoder, pooler = dense + tanh on the first token, linear classifier)."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForSequenceClassification

from runner.model_specs import BERTModel
from runner.models.base import Classifier


class EncoderClassifier(Classifier):
    def __init__(self, spec: BERTModel, vocab_size: int, n_classes: int, pad_token_id: int | None):
        super().__init__()
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=spec.width,
            num_hidden_layers=spec.depth,
            num_attention_heads=spec.heads,
            intermediate_size=spec.intermediate,
            max_position_embeddings=spec.n_positions,
            hidden_dropout_prob=spec.dropout,
            attention_probs_dropout_prob=spec.dropout,
            classifier_dropout=spec.dropout,
            initializer_range=spec.init_range,
            num_labels=n_classes,
            pad_token_id=pad_token_id if pad_token_id is not None else 0,
        )
        self.encoder = BertForSequenceClassification(config)
        self.n_outputs = n_classes

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder(
            input_ids=features["input_ids"], attention_mask=features.get("attention_mask")
        ).logits

    def parameter_group(self, name: str) -> str:
        if "LayerNorm" in name:  # in the embeddings, after attention and after the MLP
            return "norm"
        if ".embeddings." in name:
            return "embedding"
        if ".attention." in name:
            return "attention"
        if ".intermediate." in name or ".output." in name:
            return "mlp"
        if ".pooler." in name or name.startswith("encoder.classifier."):
            return "head"
        raise ValueError(f"parameter {name!r} belongs to no known group")
