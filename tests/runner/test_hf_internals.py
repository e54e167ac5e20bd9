"""The Hugging Face internals ``runner/models/gpt.py`` reaches into, checked one by one.

``gpt.py`` evaluates the last OpenAIGPT block at the answer position alone, builds the tabled
forward from the block's parts, and swaps in an MLP of another width: it reads module paths,
attribute names, call signatures and the block's arithmetic (post-LN, attention scaled by
sqrt(head size), causal) that transformers does not promise to keep. A transformers release that
changes any of them fails here, with the installed version and what changed, before it can
change a number silently. pyproject.toml bounds transformers to the releases this was checked on.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import transformers
from torch import nn

from runner.models.gpt import AnswerGPT, DecoderClassifier, build_openai
from runner.spec import GPTModel

WIDTH, HEADS, VOCAB, POSITIONS = 32, 4, 15, 8


def _fail_if(problems: list[str]) -> None:
    if problems:
        pytest.fail(
            f"transformers {transformers.__version__} is not compatible with "
            "runner/models/gpt.py:\n  - " + "\n  - ".join(problems) + "\nInstall a transformers "
            "release within the bounds in pyproject.toml, or adapt gpt.py to the new internals.",
            pytrace=False,
        )


def _lm() -> nn.Module:
    torch.manual_seed(0)
    spec = GPTModel(width=WIDTH, depth=2, heads=HEADS, n_positions=POSITIONS)
    return build_openai(transformers.OpenAIGPTLMHeadModel, spec, VOCAB)


def test_module_paths_and_signatures():
    problems = []
    try:
        from transformers.models.openai import modeling_openai
    except ImportError as exc:
        _fail_if([f"transformers.models.openai.modeling_openai does not import ({exc})"])
    for name in ("MLP", "Block", "Attention", "OpenAIGPTModel", "OpenAIGPTLMHeadModel"):
        if not hasattr(modeling_openai, name):
            problems.append(f"modeling_openai.{name} is gone (build_openai, AnswerGPT)")
    mlp = getattr(modeling_openai, "MLP", None)
    if mlp is not None:
        params = list(inspect.signature(mlp.__init__).parameters)[1:]
        if params[:2] != ["n_state", "config"]:
            problems.append(
                f"MLP.__init__ takes {params}, not (n_state, config) (build_openai with "
                "model.intermediate)"
            )
    config = transformers.OpenAIGPTConfig(
        vocab_size=VOCAB, n_positions=POSITIONS, n_embd=WIDTH, n_layer=2, n_head=HEADS,
        afn="gelu", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    )  # fmt: skip
    for key, value in (("n_embd", WIDTH), ("n_head", HEADS), ("n_layer", 2), ("afn", "gelu")):
        if getattr(config, key, None) != value:
            problems.append(f"OpenAIGPTConfig({key}={value!r}) reads back as "
                            f"{getattr(config, key, None)!r} (gpt_config)")
    _fail_if(problems)


def test_attributes_the_answer_position_forward_reads():
    lm = _lm()
    problems = []
    gpt = getattr(lm, "transformer", None)
    if gpt is None:
        _fail_if(["OpenAIGPTLMHeadModel has no .transformer (AnswerGPT.forward)"])
    expected = {
        "tokens_embed": nn.Embedding,
        "positions_embed": nn.Embedding,
        "drop": nn.Dropout,
        "h": nn.ModuleList,
    }
    for name, kind in expected.items():
        if not isinstance(getattr(gpt, name, None), kind):
            problems.append(f"OpenAIGPTModel.{name} is not a {kind.__name__} (AnswerGPT.forward)")
    if not isinstance(getattr(lm, "lm_head", None), nn.Linear):
        problems.append("OpenAIGPTLMHeadModel.lm_head is not an nn.Linear (AnswerGPT.forward)")
    elif lm.lm_head.weight is not getattr(gpt.tokens_embed, "weight", None):
        problems.append("tie_word_embeddings=True no longer ties lm_head to tokens_embed")
    for name in ("_init_weights", "tie_weights"):
        if not callable(getattr(lm, name, None)):
            problems.append(f"the model has no {name}() (build_openai with model.intermediate)")
    _fail_if(problems)
    block = gpt.h[0]
    for name in ("attn", "ln_1", "mlp", "ln_2"):
        if not isinstance(getattr(block, name, None), nn.Module):
            problems.append(f"Block.{name} is gone (_last_position_block)")
    _fail_if(problems)
    attn = block.attn
    checks = {
        "c_attn": isinstance(getattr(attn, "c_attn", None), nn.Module),
        "c_proj": isinstance(getattr(attn, "c_proj", None), nn.Module),
        "attn_dropout": isinstance(getattr(attn, "attn_dropout", None), nn.Module),
        "resid_dropout": isinstance(getattr(attn, "resid_dropout", None), nn.Module),
        "split_size == width": getattr(attn, "split_size", None) == WIDTH,
        "n_head == heads": getattr(attn, "n_head", None) == HEADS,
        "scale is True (scores divided by sqrt(head size))": getattr(attn, "scale", None) is True,
    }
    problems += [f"Attention.{what} does not hold (_last_position_block)"
                 for what, ok in checks.items() if not ok]
    _fail_if(problems)


def _block_from_scratch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What gpt.py assumes a Block computes, written out: causal self-attention with scores
    divided by sqrt(head size), then post-LN residuals ln_1(x + attn), ln_2(n + mlp(n))."""
    batch, positions, width = x.shape
    head = width // HEADS
    q, k, v = block.attn.c_attn(x).split(width, dim=2)
    q, k, v = (t.view(batch, positions, HEADS, head).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(head)
    future = torch.ones(positions, positions, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, positions, width)
    n = block.ln_1(x + block.attn.c_proj(mixed))
    return block.ln_2(n + block.mlp(n))


def test_block_arithmetic_is_the_one_the_answer_position_forward_reimplements():
    lm = _lm().eval()
    block = lm.transformer.h[0]
    x = torch.randn(5, 6, WIDTH) * 3.0
    with torch.no_grad():
        out = block(x)
        try:
            hidden = out[0]
        except (TypeError, IndexError, KeyError):
            _fail_if([f"Block(x) returns {type(out).__name__}, not a sequence whose [0] is the "
                      "hidden state (AnswerGPT.forward)"])
        if not (isinstance(hidden, torch.Tensor) and hidden.shape == x.shape):
            _fail_if([f"Block(x)[0] is {type(hidden).__name__} "
                      f"{getattr(hidden, 'shape', '')}, not the hidden state (AnswerGPT.forward)"])
        expected = _block_from_scratch(block, x)
    if not torch.allclose(hidden, expected, rtol=1e-5, atol=1e-5):
        _fail_if(["an OpenAIGPT Block no longer computes post-LN causal attention with scores "
                  "scaled by sqrt(head size) (_last_position_block, tabled_answer_logits): "
                  f"largest difference {(hidden - expected).abs().max().item():.3g}"])


def test_the_model_level_calls_gpt_py_makes():
    problems = []
    model = AnswerGPT(GPTModel(width=WIDTH, depth=1, heads=HEADS), vocab_size=VOCAB).eval()
    inputs = torch.randint(0, VOCAB, (4, 6))
    with torch.no_grad():
        try:
            logits = model.reference_logits(inputs)  # lm(input_ids=...).logits
            if logits.shape != (4, VOCAB):
                problems.append(f"lm(input_ids).logits[:, -1] has shape {tuple(logits.shape)}")
        except Exception as exc:  # report what changed rather than a traceback
            problems.append(f"lm(input_ids=...).logits failed: {type(exc).__name__}: {exc}")
        decoder = DecoderClassifier(GPTModel(width=WIDTH, depth=1, heads=HEADS), VOCAB, 3).eval()
        features = {"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}
        try:
            if decoder(features).shape != (4, 3):
                problems.append("OpenAIGPTModel(...).last_hidden_state has another shape")
        except Exception as exc:
            problems.append(
                "OpenAIGPTModel(input_ids=..., attention_mask=...).last_hidden_state failed: "
                f"{type(exc).__name__}: {exc}"
            )
    _fail_if(problems)
