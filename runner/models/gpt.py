"""1-layer (or deeper) HF OpenAIGPT decoder that predicts the answer token.

Built from config, never downloaded: ``OpenAIGPTLMHeadModel`` with the authors' settings (MLP
4 * width, gelu, all dropouts 0, layer-norm eps 1e-5, init std 0.02, head tied to the token
embedding). The loss needs only the answer position, so the last block is evaluated there alone
(its keys and values still see every position) and the head only there: the numbers equal the
HF model's output at that position (``reference_logits``, checked in the tests) at about a third
of the cost. The weights are the HF module's own, so state dicts load into
``OpenAIGPTLMHeadModel`` unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

from runner.spec import GPTModel


class AnswerGPT(nn.Module):
    def __init__(self, spec: GPTModel, vocab_size: int):
        super().__init__()
        config = OpenAIGPTConfig(
            vocab_size=vocab_size,
            n_positions=spec.n_positions,
            n_embd=spec.width,
            n_layer=spec.depth,
            n_head=spec.heads,
            afn="gelu",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=1e-5,
            initializer_range=spec.init_range,
            tie_word_embeddings=True,
        )
        self.lm = OpenAIGPTLMHeadModel(config)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (batch, vocab) at the last input position."""
        gpt = self.lm.transformer
        hidden = gpt.tokens_embed(inputs) + gpt.positions_embed.weight[: inputs.shape[1]]
        for block in gpt.h[:-1]:
            hidden = block(hidden)[0]
        return self.lm.lm_head(_last_position_block(gpt.h[-1], hidden))

    def reference_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The plain HF forward over every position, answer position taken afterwards."""
        return self.lm(input_ids=inputs).logits[:, -1]


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
    attended = torch.matmul(weights.softmax(dim=-1), value)  # (B, H, 1, dh)
    attended = attn.c_proj(attended.transpose(1, 2).reshape(batch, width))
    normed = block.ln_1(hidden[:, -1] + attended)
    return block.ln_2(normed + block.mlp(normed))


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
