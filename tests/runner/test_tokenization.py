"""WordPiece tokenizer trained on real IMDB reviews, its disk cache, and fixed-length encoding."""

from __future__ import annotations

import numpy as np
import pytest

from runner.tasks.text_spec import TextClassificationTask, TokenizerSpec
from runner.tokenization import SPECIAL_TOKENS, cached_wordpiece, encode, get_tokenizer


@pytest.fixture(scope="module")
def reviews(shared_data) -> list[str]:
    """3000 real IMDB training reviews, both classes (the file is sorted neg then pos)."""
    pq = pytest.importorskip("pyarrow.parquet")
    texts = pq.read_table(shared_data / "imdb" / "train.parquet", columns=["text"])
    texts = texts.column("text").to_pylist()
    return texts[:1500] + texts[-1500:]


def _snapshot(directory):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir())}


def test_trained_tokenizer_is_reused_from_the_disk_cache(reviews, tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path))
    spec = TokenizerSpec(vocab_size=2000)
    first, entry, trained = cached_wordpiece(spec, reviews)
    assert trained
    assert entry.parent == tmp_path / "tokenizers"
    assert {"tokenizer.json", "meta.json", "tokenizer_config.json"} <= set(_snapshot(entry))
    before = _snapshot(entry)

    second, entry2, trained2 = cached_wordpiece(spec, reviews)
    assert not trained2 and entry2 == entry
    assert _snapshot(entry) == before  # nothing rewritten
    # Only the entry itself: no temporary directories left behind.
    assert [p.name for p in (tmp_path / "tokenizers").iterdir()] == [entry.name]
    a, b = encode(first, reviews[:50], 64), encode(second, reviews[:50], 64)
    assert np.array_equal(a["input_ids"], b["input_ids"])

    # Every knob and the corpus are part of the key.
    assert cached_wordpiece(TokenizerSpec(vocab_size=1500), reviews)[2]
    assert cached_wordpiece(spec, reviews[:-1])[2]
    assert len(list((tmp_path / "tokenizers").iterdir())) == 3


def test_cache_entry_is_a_valid_tokenizer_source(reviews, tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path))
    trained, entry, _ = cached_wordpiece(TokenizerSpec(vocab_size=2000), reviews)
    task = TextClassificationTask(
        name="imdb", data="unused", tokenizer={"source": str(entry)}
    )
    loaded = get_tokenizer(task, train_texts=[])
    expected = encode(trained, reviews[:20], 48)["input_ids"]
    assert np.array_equal(encode(loaded, reviews[:20], 48)["input_ids"], expected)
    assert loaded.pad_token_id == 0


def test_bert_style_recipe(reviews, tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path))
    tok = cached_wordpiece(TokenizerSpec(vocab_size=2000), reviews)[0]
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert len(tok) == 2000  # 3000 reviews fill a 2000-token vocabulary
    ids = encode(tok, ["The MOVIE was great", "the movie was great"], 16)["input_ids"]
    assert np.array_equal(ids[0], ids[1])  # lowercased
    assert ids[0, 0] == tok.cls_token_id
    assert any(t.startswith("##") for t in tok.get_vocab())  # WordPiece continuation pieces
    cased = cached_wordpiece(TokenizerSpec(vocab_size=2000, lowercase=False), reviews)[0]
    cased_ids = encode(cased, ["The MOVIE", "the movie"], 8)["input_ids"]
    assert not np.array_equal(cased_ids[0], cased_ids[1])


def test_encode_pads_and_truncates_right(reviews, tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path))
    tok = cached_wordpiece(TokenizerSpec(vocab_size=2000), reviews)[0]
    texts = ["a short review", reviews[0]]
    out = encode(tok, texts, 24)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (2, 24)
    full = tok(reviews[0])["input_ids"]
    assert len(full) > 24
    assert ids[1, :23].tolist() == full[:23] and ids[1, 23] == tok.sep_token_id  # right truncation
    short = tok("a short review")["input_ids"]
    assert ids[0, : len(short)].tolist() == short and (ids[0, len(short) :] == 0).all()
    assert np.array_equal(mask, (ids != tok.pad_token_id).astype(np.int64))


def test_training_knobs_with_a_source_are_an_error():
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size applies only to a tokenizer"):
        TokenizerSpec(source="bert-base-uncased", vocab_size=8000)


def test_missing_tokenizer_source_is_an_error(tmp_path):
    task = TextClassificationTask(name="imdb", tokenizer={"source": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match=r"tokenizer.source: cannot load tokenizer .*nope"):
        get_tokenizer(task, train_texts=[])
