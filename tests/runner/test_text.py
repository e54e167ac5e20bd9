"""Text classification tasks from real IMDB rows: the shared parquet files, and csv/jsonl/parquet
copies of a few hundred rows written to tmp dirs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from runner.tasks.text import load_splits, load_text_task, train_split_size
from runner.tasks.text_spec import TextClassificationTask


def _task(data, **kw):
    kw.setdefault("max_length", 64)
    kw.setdefault("tokenizer", {"vocab_size": 1000})
    return TextClassificationTask(name="imdb", data=str(data), **kw)


def test_shared_imdb_splits_load_balanced(shared_data, text_caches):
    task = TextClassificationTask(name="imdb", data=str(shared_data / "imdb"))
    splits = load_splits(task)
    assert len(splits.train_texts) == len(splits.test_texts) == 25000
    assert np.bincount(splits.train_labels).tolist() == [12500, 12500]
    assert np.bincount(splits.test_labels).tolist() == [12500, 12500]
    assert splits.n_classes == task.n_classes == 2 and splits.class_names is None
    assert train_split_size(task) == 25000
    # The file order is kept (all neg, then all pos); subsets shuffle, the splits do not.
    assert splits.train_labels[:12500].max() == 0 and splits.train_labels[12500:].min() == 1


def test_tokenised_real_rows(imdb_dir, text_caches):
    task = _task(imdb_dir())
    data = load_text_task(task, n_samples=200, seed=0)
    ids, mask = data.train_features["input_ids"], data.train_features["attention_mask"]
    assert ids.shape == mask.shape == (200, 64) and ids.dtype == mask.dtype == np.int64
    assert data.test_features["input_ids"].shape == (200, 64)
    assert np.bincount(data.train_labels).tolist() == [100, 100]
    assert data.pad_token_id == 0 and data.vocab_size == 1000 and data.n_classes == 2
    assert (ids[:, 0] == 2).all()  # [CLS] first
    assert np.array_equal(mask, (ids != data.pad_token_id).astype(np.int64))
    truncated = mask.sum(axis=1) == 64
    assert truncated.any() and (ids[truncated, -1] == 3).all()  # [SEP] closes a truncated row
    assert ids.max() < data.vocab_size

    # Nested over n, seeded over seeds; the test set never changes.
    rows = {tuple(r) for r in ids.tolist()}
    smaller = load_text_task(task, n_samples=80, seed=0)
    assert {tuple(r) for r in smaller.train_features["input_ids"].tolist()} <= rows
    other = load_text_task(task, n_samples=200, seed=1)
    assert {tuple(r) for r in other.train_features["input_ids"].tolist()} != rows
    assert np.array_equal(other.test_features["input_ids"], data.test_features["input_ids"])


@pytest.mark.parametrize("ext", ["csv", "jsonl"])
def test_csv_and_jsonl_load_like_parquet(imdb_dir, text_caches, ext):
    reference = load_text_task(_task(imdb_dir("parquet")), 100, seed=2)
    other = load_text_task(_task(imdb_dir(ext)), 100, seed=2)
    for name in ("input_ids", "attention_mask"):
        assert np.array_equal(reference.train_features[name], other.train_features[name])
        assert np.array_equal(reference.test_features[name], other.test_features[name])
    assert np.array_equal(reference.train_labels, other.train_labels)
    assert load_splits(_task(imdb_dir(ext))).train_texts == load_splits(
        _task(imdb_dir("parquet"))
    ).train_texts


def test_single_file_with_string_labels_and_test_fraction(
    imdb_rows, tmp_path, text_caches, write_rows
):
    names = ["neg", "pos"]
    rows = [{"review": r["text"], "sentiment": names[r["label"]]} for r in imdb_rows["train"]]
    path = tmp_path / "reviews.jsonl"
    write_rows(rows, path)
    task = TextClassificationTask(
        name="text_classification",
        data=str(path),
        text_column="review",
        label_column="sentiment",
        test_fraction=0.25,
        max_length=32,
        tokenizer={"vocab_size": 800},
    )
    splits = load_splits(task)
    assert splits.class_names == ("neg", "pos")
    assert np.bincount(splits.test_labels).tolist() == [75, 75]
    # A partition of the rows (IMDB repeats some texts, so compare multisets, not sets).
    assert len(splits.train_texts) == 450
    assert Counter(splits.train_texts) + Counter(splits.test_texts) == Counter(
        r["review"] for r in rows
    )
    assert load_text_task(task, 10, seed=0).n_classes == 2


def test_eval_subset_is_fixed_class_proportional_and_inside_the_test_split(imdb_dir, text_caches):
    full = load_text_task(_task(imdb_dir()), 50, seed=0)
    sub = load_text_task(_task(imdb_dir(), eval_subset=61), 50, seed=3)
    assert np.bincount(sub.test_labels).tolist() in ([30, 31], [31, 30])
    full_rows = [tuple(r) for r in full.test_features["input_ids"].tolist()]
    assert {tuple(r) for r in sub.test_features["input_ids"].tolist()} <= set(full_rows)
    again = load_text_task(_task(imdb_dir(), eval_subset=61), 50, seed=4)
    assert np.array_equal(again.test_features["input_ids"], sub.test_features["input_ids"])


def test_in_process_cache_tokenises_once(imdb_dir, text_caches):
    from runner.tasks.text import _tokenised

    task = _task(imdb_dir())
    load_text_task(task, 40, seed=0)
    load_text_task(task, 80, seed=1)
    info = _tokenised.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_bad_sources_name_the_field(imdb_rows, imdb_dir, tmp_path, text_caches, write_rows):
    def fails(task, match, n=10):
        with pytest.raises(ValueError, match=match):
            load_text_task(task, n, seed=0)

    fails(_task(tmp_path / "missing"), r"task.data: no such file or directory .*current directory")
    fails(_task(imdb_dir(), text_column="review"), r"task.text_column: no column 'review' in split")
    fails(_task(imdb_dir(), label_column="stars"), r"task.label_column: no column 'stars'")
    fails(_task(imdb_dir()), r"n_samples = 601 exceeds the train split of 600", n=601)
    fails(_task(imdb_dir(splits=("train",))), r"task.test_fraction is required: .* no 'test'")
    fails(_task(imdb_dir(), test_fraction=0.2), r"task.test_fraction = 0.2 is for single-split")
    fails(_task(imdb_dir(), train_split="training"), r"task.train_split: no file training\.")
    fails(_task(imdb_dir(), eval_subset=201), r"task.eval_subset = 201 exceeds the test split")
    fails(_task(imdb_dir()), r"n_samples = 1 leaves class\(es\) \[1\] without a training", n=1)

    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for split in ("train", "test"):
        shifted_rows = [{**r, "label": r["label"] + 1} for r in imdb_rows[split]]
        write_rows(shifted_rows, shifted / f"{split}.jsonl")
    fails(_task(shifted), r"task.label_column: integer labels .* must be the class ids 0..k-1")

    odd = tmp_path / "reviews.txt"
    odd.write_text("x")
    fails(_task(odd), r"task.data: cannot read .*reviews.txt.* must be one of")


def test_spec_errors_name_the_field():
    with pytest.raises(ValueError, match=r"task.data is required for task.name = 'text_class"):
        TextClassificationTask(name="text_classification")
    with pytest.raises(ValueError, match=r"task.train_split and task.test_split are both 'train'"):
        TextClassificationTask(name="imdb", test_split="train")
    with pytest.raises(ValueError, match=r"test_fraction"):
        TextClassificationTask(name="imdb", test_fraction=1.0)
    with pytest.raises(ValueError, match=r"Extra inputs are not permitted"):
        TextClassificationTask(name="imdb", max_len=64)
    assert TextClassificationTask(name="yelp_polarity").source == "fancyzhx/yelp_polarity"
    assert TextClassificationTask(name="imdb").source == "stanfordnlp/imdb"
    ni = TextClassificationTask(name="natural_instructions", data="x.json", test_fraction=0.2)
    assert ni.n_classes is None
