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


def _scaled_model(depth: int = 1, dropout: float = 0.0, seed: int = 0) -> AnswerGPT:
    torch.manual_seed(seed)
    model = AnswerGPT(GPTModel(width=64, depth=depth, heads=4, dropout=dropout), vocab_size=27)
    with torch.no_grad():  # a larger scale makes the comparison meaningful
        for p in model.parameters():
            p.mul_(3.0)
    return model


def test_vocab_tables_compute_the_same_logits_and_gradients():
    model = _scaled_model()
    inputs = torch.as_tensor(all_pairs(23)[0][:300])
    labels = torch.as_tensor(all_pairs(23)[1][:300])
    results = []
    for tables in (False, True):
        model.vocab_tables = tables
        model.zero_grad(set_to_none=True)
        logits = model(inputs)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (plain, plain_grads), (tabled, tabled_grads) = results
    assert not torch.equal(plain, tabled)  # really another path (another summation order)
    torch.testing.assert_close(tabled, plain, rtol=1e-5, atol=1e-5)
    for a, b in zip(tabled_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_vocab_tables_stand_aside_where_they_would_change_the_function():
    inputs = torch.as_tensor(all_pairs(23)[0][:50])
    deep = _scaled_model(depth=2)
    plain = deep(inputs)
    deep.vocab_tables = True
    assert not deep.tables_apply()
    assert torch.equal(deep(inputs), plain)  # the plain path, bit for bit
    with_dropout = _scaled_model(dropout=0.3)
    with_dropout.vocab_tables = True
    assert not with_dropout.tables_apply()  # training: dropout acts per sample
    with_dropout.eval()
    assert with_dropout.tables_apply()  # evaluation: no dropout, the tables are exact
    with torch.no_grad():
        torch.testing.assert_close(
            with_dropout(inputs), with_dropout.reference_logits(inputs), rtol=1e-5, atol=1e-5
        )
