"""MLP classifier: token embedding, pooled to one vector (concatenated for fixed-length inputs,
mean over non-padding tokens for text), ``depth`` hidden ReLU layers, linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from runner.model_specs import MLPModel
from runner.models.base import Classifier


class MLPClassifier(Classifier):
    def __init__(
        self,
        spec: MLPModel,
        vocab_size: int,
        n_classes: int,
        sequence_length: int,
        pooling: str,
        pad_token_id: int | None,
    ):
        super().__init__()
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, spec.embedding, padding_idx=pad_token_id)
        width_in = spec.embedding * (sequence_length if pooling == "concat" else 1)
        layers: list[nn.Module] = []
        for _ in range(spec.depth):
            layers += [nn.Linear(width_in, spec.width), nn.ReLU(), nn.Dropout(spec.dropout)]
            width_in = spec.width
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(width_in, n_classes)
        self.n_outputs = n_classes

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded = self.embedding(features["input_ids"])  # (B, L, E)
        if self.pooling == "concat":
            pooled = embedded.flatten(1)
        else:
            mask = features.get("attention_mask")
            if mask is None:
                pooled = embedded.mean(dim=1)
            else:
                weights = mask.unsqueeze(-1).to(embedded.dtype)
                pooled = (embedded * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.classifier(self.hidden(pooled))

    def parameter_group(self, name: str) -> str:
        if name.startswith("embedding."):
            return "embedding"
        if name.startswith("hidden."):
            return "mlp"
        if name.startswith("classifier."):
            return "head"
        raise ValueError(f"parameter {name!r} belongs to no known group")
