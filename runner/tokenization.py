"""Tokenizers for text tasks: a pre-built one, or a BERT-style WordPiece trained once and cached.

The offline default trains a WordPiece tokenizer (the recipe of bert-base-uncased: BertNormalizer,
BertPreTokenizer, "##" continuation prefix, ``[CLS] text [SEP]`` post-processing) on the task's
*whole* train split, never on the n-sample subset: the vocabulary must not change along the
data-size axis, or that axis would change two things at once.

Trained tokenizers are cached on disk under ``$CDS_CACHE_DIR/tokenizers/<key>/`` (default
``~/.cache/cds``), ``<key>`` = sha256 of the training texts' content hash, the training knobs,
the special tokens, the ``tokenizers`` version and a format version. Each entry holds
``tokenizer.json`` (the ``tokenizers`` model), transformers' ``tokenizer_config.json`` (so the
directory also works as ``tokenizer.source``) and ``meta.json`` (what the key was made of, for
people). Entries are written to a temporary directory and renamed into place, so processes that
train the same tokenizer concurrently never see a half-written entry (the loser of the race
discards its copy and loads the winner's).

Training is not bit-reproducible: ``tokenizers`` (0.23) breaks ties between equally frequent
merges in hash order, so two trainings on the same texts can assign some ids differently (and,
with a binding vocab_size, keep a few different rare tokens). The cache makes every later run
on this machine reuse the first result; to reproduce runs elsewhere, copy the cache entry or
point ``tokenizer.source`` at it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from runner.tasks.text_spec import TextClassificationTask, TokenizerSpec

log = logging.getLogger(__name__)

#: Special tokens of a trained tokenizer, in id order ([PAD] = 0, [UNK] = 1, ... [MASK] = 4).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: Bumped whenever the training recipe or the entry layout changes (it is part of the key).
CACHE_FORMAT = 1


def cache_root() -> Path:
    """``$CDS_CACHE_DIR`` if set, else ``~/.cache/cds``."""
    return Path(os.environ.get("CDS_CACHE_DIR") or Path.home() / ".cache" / "cds")


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 (hex) of the texts, in order; each is length-prefixed so boundaries count."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def tokenizer_key(spec: TokenizerSpec, corpus_sha256: str) -> tuple[str, dict]:
    """The cache key (sha256 hex) of a trained tokenizer, and the fields it hashes."""
    fields = {
        "format": CACHE_FORMAT,
        "tokenizers": tokenizers.__version__,
        "corpus_sha256": corpus_sha256,
        "vocab_size": spec.vocab_size,
        "lowercase": spec.lowercase,
        "min_frequency": spec.min_frequency,
        "special_tokens": list(SPECIAL_TOKENS),
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest(), fields


def train_wordpiece(spec: TokenizerSpec, texts: Sequence[str]) -> Tokenizer:
    """Train a BERT-style WordPiece tokenizer on ``texts`` (no caching)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    # strip_accents=None follows lowercase, as in bert-base-uncased.
    tok.normalizer = normalizers.BertNormalizer(lowercase=spec.lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        padding_side="right",
        truncation_side="right",
    )


def cached_wordpiece(
    spec: TokenizerSpec, texts: Sequence[str]
) -> tuple[PreTrainedTokenizerFast, Path, bool]:
    """Load the WordPiece tokenizer trained on ``texts`` from the cache, training it if absent.

    Returns
    -------
    tuple
        The tokenizer, its cache entry directory, and whether it was trained by this call
        (False: loaded from the cache).
    """
    key, fields = tokenizer_key(spec, texts_digest(texts))
    entry = cache_root() / "tokenizers" / key
    trained = False
    if not (entry / "tokenizer.json").is_file():
        entry.parent.mkdir(parents=True, exist_ok=True)
        tok = train_wordpiece(spec, texts)
        trained = True
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
        try:
            # save_pretrained (tokenizer.json plus transformers' config files) makes the entry a
            # valid tokenizer.source directory: the way to reuse this exact vocabulary elsewhere.
            _wrap(tok).save_pretrained(str(tmp))
            meta = {**fields, "n_texts": len(texts), "trained_vocab_size": tok.get_vocab_size()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            os.rename(tmp, entry)
        except OSError:
            # Another process renamed its (identical-key) entry into place first: use that one.
            shutil.rmtree(tmp, ignore_errors=True)
            if not (entry / "tokenizer.json").is_file():
                raise
        log.info("trained a WordPiece tokenizer on %d texts into %s", len(texts), entry)
    # Trained or not, load from the entry, so a fresh and a cached tokenizer are the same object.
    return _wrap(Tokenizer.from_file(str(entry / "tokenizer.json"))), entry, trained


def get_tokenizer(
    task: TextClassificationTask, train_texts: Sequence[str]
) -> PreTrainedTokenizerFast:
    """The tokenizer of ``task``: ``task.tokenizer.source`` via AutoTokenizer if set, otherwise
    the WordPiece tokenizer trained on ``train_texts`` (the whole train split), cached on disk."""
    spec = task.tokenizer
    if spec.source is None:
        return cached_wordpiece(spec, train_texts)[0]
    try:
        tok = AutoTokenizer.from_pretrained(spec.source)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"tokenizer.source: cannot load tokenizer {spec.source!r} (a local directory is "
            f"resolved against the current directory {os.getcwd()!r}; a hub name needs network "
            f"access or the hub cache): {exc}"
        ) from exc
    if not tok.is_fast:
        raise ValueError(f"tokenizer.source: {spec.source!r} has no fast (Rust) tokenizer")
    if tok.pad_token_id is None:
        raise ValueError(
            f"tokenizer.source: {spec.source!r} defines no pad token, and samples are padded "
            "to task.max_length; choose a tokenizer with a pad token"
        )
    tok.padding_side, tok.truncation_side = "right", "right"
    return tok


def encode(
    tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], max_length: int
) -> dict[str, np.ndarray]:
    """Tokenise ``texts`` to fixed length: right truncation, right padding with the pad id.

    Returns
    -------
    dict
        ``input_ids`` and ``attention_mask``, int64 arrays of shape (len(texts), max_length)
        (tokens); the mask is 1 exactly on non-pad positions. Special tokens ([CLS] ... [SEP]
        for a trained tokenizer) come from the tokenizer's post-processor and count towards
        ``max_length``.
    """
    batch = tokenizer(
        list(texts),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_attention_mask=True,
        return_token_type_ids=False,
        return_tensors="np",
    )
    return {
        "input_ids": np.asarray(batch["input_ids"], dtype=np.int64).reshape(-1, max_length),
        "attention_mask": np.asarray(batch["attention_mask"], dtype=np.int64).reshape(
            -1, max_length
        ),
    }
