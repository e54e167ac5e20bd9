from __future__ import annotations

import torch

from runner.models.gpt import AnswerGPT, parameter_group
from runner.spec import GPTModel
from runner.tasks.modular import all_pairs


def test_answer_position_forward_equals_hf_forward():
    for depth in (1, 2):
        torch.manual_seed(depth)
        model = AnswerGPT(GPTModel(width=64, depth=depth, heads=4), vocab_size=27)
        with torch.no_grad():  # a larger scale makes the comparison meaningful
            for p in model.parameters():
                p.mul_(3.0)
        inputs = torch.as_tensor(all_pairs(23)[0][:200])
        fast, reference = model(inputs), model.reference_logits(inputs)
        assert fast.shape == (200, 27)
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_head_is_tied_and_every_parameter_has_a_group():
    model = AnswerGPT(GPTModel(width=32, heads=4), vocab_size=15)
    assert model.lm.lm_head.weight is model.lm.transformer.tokens_embed.weight
    groups = {parameter_group(n) for n, _ in model.named_parameters()}
    assert groups == {"embedding", "attention", "mlp", "norm"}  # the tied head has none


def test_same_seed_same_initialisation():
    def build():
        torch.manual_seed(5)
        return AnswerGPT(GPTModel(width=32, heads=4), vocab_size=15)

    a, b = build(), build()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
