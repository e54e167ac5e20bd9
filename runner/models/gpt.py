"""HF OpenAIGPT decoders, built from config, never downloaded.

:class:`AnswerGPT` is the authors' modular-addition model: ``OpenAIGPTLMHeadModel`` (MLP 4 *
width, gelu, dropouts from the spec (0 in the grokking configuration), layer-norm eps 1e-5, init
std 0.02, head tied to the token embedding), read at the answer position. The loss needs only
that position, so the last block is evaluated there alone (its keys and values still see every
position) and the head only there: the numbers equal the HF model's output at that position
(``reference_logits``, checked in the tests) at about a third of the cost. The weights are the HF
module's own, so state dicts load into ``OpenAIGPTLMHeadModel`` unchanged.

With one layer, ``vocab_tables`` (on in the runner, see ``StoreSettings.vocab_tables``) goes one
step further: there the keys and values of every position, and the query and residual of the
answer position, depend only on (token, position), so they are computed once per vocabulary
entry and position and gathered per sample (:func:`tabled_answer_logits`). Same function, summed
in another order: it differs from the plain forward by float rounding only (tested).

:class:`DecoderClassifier` is the decoder for text classification: the HF ``OpenAIGPTModel``
with its padding mask, and a linear classifier on the hidden state of the last non-padding token.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel, OpenAIGPTModel

from runner.model_specs import GPTModel
from runner.models.base import Classifier, last_real_position


def gpt_config(spec: GPTModel, vocab_size: int) -> OpenAIGPTConfig:
    return OpenAIGPTConfig(
        vocab_size=vocab_size,
        n_positions=spec.n_positions,
        n_embd=spec.width,
        n_layer=spec.depth,
        n_head=spec.heads,
        afn="gelu",
        resid_pdrop=spec.dropout,
        embd_pdrop=spec.dropout,
        attn_pdrop=spec.dropout,
        layer_norm_epsilon=1e-5,
        initializer_range=spec.init_range,
        tie_word_embeddings=True,
    )


def build_openai(cls: type, spec: GPTModel, vocab_size: int) -> nn.Module:
    """``cls`` (an HF OpenAIGPT model class) from the spec. HF OpenAIGPT fixes the MLP at 4 *
    width; another ``intermediate`` size replaces each block's MLP before initialisation."""
    config = gpt_config(spec, vocab_size)
    if spec.intermediate is None or spec.intermediate == 4 * spec.width:
        return cls(config)
    from transformers.models.openai.modeling_openai import MLP

    model = cls(config)
    blocks = model.h if hasattr(model, "h") else model.transformer.h
    for block in blocks:
        block.mlp = MLP(spec.intermediate, config)
    model.apply(model._init_weights)  # the same initialiser as every other weight
    model.tie_weights()
    return model


class AnswerGPT(Classifier):
    def __init__(self, spec: GPTModel, vocab_size: int):
        super().__init__()
        self.lm = build_openai(OpenAIGPTLMHeadModel, spec, vocab_size)
        self.n_outputs = vocab_size
        self.dropout = spec.dropout
        #: Use :func:`tabled_answer_logits` where it is exact (1 layer, no active dropout).
        self.vocab_tables = False

    def forward(self, features: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Logits (batch, vocab) at the last input position."""
        inputs = features["input_ids"] if isinstance(features, dict) else features
        gpt = self.lm.transformer
        if self.vocab_tables and self.tables_apply():
            vocabulary = torch.arange(gpt.tokens_embed.num_embeddings, device=inputs.device)
            return tabled_answer_logits(self, inputs, [vocabulary] * inputs.shape[1])
        hidden = gpt.tokens_embed(inputs) + gpt.positions_embed.weight[: inputs.shape[1]]
        hidden = gpt.drop(hidden)
        for block in gpt.h[:-1]:
            hidden = block(hidden)[0]
        return self.lm.lm_head(_last_position_block(gpt.h[-1], hidden))

    def tables_apply(self) -> bool:
        """Whether the tabled forward computes this model's function: one layer (the keys of a
        deeper layer depend on the whole sequence) and no dropout in use (it would act per
        sample)."""
        return len(self.lm.transformer.h) == 1 and not (self.training and self.dropout)

    def reference_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The plain HF forward over every position, answer position taken afterwards."""
        return self.lm(input_ids=inputs).logits[:, -1]

    def parameter_group(self, name: str) -> str:
        return parameter_group(name)


class DecoderClassifier(Classifier):
    def __init__(self, spec: GPTModel, vocab_size: int, n_classes: int):
        super().__init__()
        self.decoder = build_openai(OpenAIGPTModel, spec, vocab_size)
        self.classifier = nn.Linear(spec.width, n_classes)
        nn.init.normal_(self.classifier.weight, std=spec.init_range)
        nn.init.zeros_(self.classifier.bias)
        self.n_outputs = n_classes

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.decoder(
            input_ids=features["input_ids"], attention_mask=features.get("attention_mask")
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.classifier(hidden[rows, last_real_position(features)])

    def parameter_group(self, name: str) -> str:
        return "head" if name.startswith("classifier.") else parameter_group(name)


def _last_position_block(block: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """HF OpenAIGPT ``Block`` (post-LN, scaled attention) evaluated at the last position only."""
    attn = block.attn
    batch, positions, width = hidden.shape
    heads = attn.n_head
    query, key, value = attn.c_attn(hidden).split(attn.split_size, dim=2)
    query = query[:, -1:].view(batch, 1, heads, -1).transpose(1, 2)  # (B, H, 1, dh)
    key = key.view(batch, positions, heads, -1).permute(0, 2, 3, 1)  # (B, H, dh, T)
    value = value.view(batch, positions, heads, -1).transpose(1, 2)  # (B, H, T, dh)
    # The last position may attend to every position: the causal mask removes nothing here.
    weights = torch.matmul(query, key) / math.sqrt(value.size(-1))
    weights = attn.attn_dropout(weights.softmax(dim=-1))
    attended = torch.matmul(weights, value)  # (B, H, 1, dh)
    attended = attn.resid_dropout(attn.c_proj(attended.transpose(1, 2).reshape(batch, width)))
    normed = block.ln_1(hidden[:, -1] + attended)
    return block.ln_2(normed + block.mlp(normed))


def tabled_answer_logits(
    model: AnswerGPT, inverse: torch.Tensor, tokens: list[torch.Tensor]
) -> torch.Tensor:
    """The answer-position logits of a 1-layer :class:`AnswerGPT` (dropout off), with the work
    that depends only on (token, position) done once per table entry.

    ``tokens[t]`` lists the tokens that may occur at position t (the whole vocabulary, or the
    distinct ones of a batch) and ``inverse`` (N, T) holds each sample's index into them. In one
    layer the keys and values of position t (and the query and residual at the answer position)
    are functions of the embedding of (token_t, t) alone, so the QKV projection runs on the table
    rows and each sample gathers its own; the attention at the answer position, the MLP, the
    norms and the head still run per sample. Mathematically :meth:`AnswerGPT.forward`; in
    floating point it differs only by the summation order inside the matrix products.
    """
    gpt = model.lm.transformer
    block = gpt.h[0]
    attn = block.attn
    width = gpt.tokens_embed.weight.shape[1]
    heads = attn.n_head
    keys, values = [], []
    for t, table_tokens in enumerate(tokens):
        x = gpt.tokens_embed(table_tokens) + gpt.positions_embed.weight[t]
        qkv = attn.c_attn(x)  # (U_t, 3 width)
        keys.append(qkv[:, width : 2 * width][inverse[:, t]])
        values.append(qkv[:, 2 * width :][inverse[:, t]])
    last = len(tokens) - 1
    query = qkv[:, :width][inverse[:, last]]  # the answer position (the loop's last t)
    residual = x[inverse[:, last]]
    n = inverse.shape[0]
    key = torch.stack(keys, dim=1).view(n, len(tokens), heads, -1)  # (N, T, H, dh)
    value = torch.stack(values, dim=1).view(n, len(tokens), heads, -1)
    query = query.view(n, heads, -1)
    # Products with T = 6 keys: elementwise and summed (batched 1 x dh matmuls are slow).
    scores = (key * query[:, None]).sum(dim=-1) / math.sqrt(value.shape[-1])  # (N, T, H)
    attended = (scores.softmax(dim=1)[..., None] * value).sum(dim=1)  # (N, H, dh)
    attended = attn.c_proj(attended.reshape(n, width))
    normed = block.ln_1(residual + attended)
    return model.lm.lm_head(block.ln_2(normed + block.mlp(normed)))


def parameter_group(name: str) -> str:
    """Norm group of a parameter of :class:`AnswerGPT`, from its qualified name."""
    if "tokens_embed" in name or "positions_embed" in name:
        return "embedding"
    if ".attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    if ".ln_" in name:
        return "norm"
    if "lm_head" in name:
        return "head"
    raise ValueError(f"parameter {name!r} belongs to no known group")
