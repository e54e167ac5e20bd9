"""LSTM classifier: token embedding, stacked ``nn.LSTM``, linear classifier on the hidden state
of the last non-padding step (seed 002's recurrent model)."""

from __future__ import annotations

import torch
from torch import nn

from runner.model_specs import LSTMModel
from runner.models.base import Classifier, last_real_position


class LSTMClassifier(Classifier):
    def __init__(self, spec: LSTMModel, vocab_size: int, n_classes: int, pad_token_id: int | None):
        super().__init__()
        embedding = spec.embedding or spec.width
        self.embedding = nn.Embedding(vocab_size, embedding, padding_idx=pad_token_id)
        self.dropout = nn.Dropout(spec.dropout)
        self.lstm = nn.LSTM(
            embedding, spec.width, num_layers=spec.depth, batch_first=True,
            dropout=spec.dropout if spec.depth > 1 else 0.0,
        )
        self.classifier = nn.Linear(spec.width, n_classes)
        self.n_outputs = n_classes

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        # Right padding: states after the last real token never reach the step that is read.
        states, _ = self.lstm(self.dropout(self.embedding(features["input_ids"])))
        rows = torch.arange(states.shape[0], device=states.device)
        return self.classifier(self.dropout(states[rows, last_real_position(features)]))

    def parameter_group(self, name: str) -> str:
        if name.startswith("embedding."):
            return "embedding"
        if name.startswith("lstm."):
            return "recurrent"
        if name.startswith("classifier."):
            return "head"
        raise ValueError(f"parameter {name!r} belongs to no known group")
