"""Text classification tasks loaded through ``datasets``, tokenised, pruned to n samples.

Sources (``task.data``, see :class:`~runner.tasks.text_spec.TextClassificationTask`):

- a local directory with one ``<split>.parquet|csv|jsonl|json`` file per split (e.g.
  shared/data/imdb with train.parquet and test.parquet); without a ``<test_split>`` file it is a
  single-split source;
- a local ``.parquet|.csv|.jsonl|.json`` file: a single-split source;
- a Natural-Instructions task file (``name: natural_instructions``): a single-split source;
- anything else is a hub dataset name, loaded with ``datasets.load_dataset(name)``.

Local tables are read with ``datasets.load_dataset("parquet"|"csv"|"json", data_files=...)``
(jsonl and json both use the "json" builder: JSON lines, or one JSON list of records). A
single-split source is split into train and test by ``task.test_fraction``: a seeded,
class-proportional hold-out (largest remainders, see :mod:`runner.tasks.pruning`).

Labels: integer labels are kept and must be the class ids 0..k-1 with every id present in the
train split; string labels are mapped to ids in sorted order of the train split's distinct
values (NI task846: "no" = 0, "yes" = 1).

Seeds (all ``np.random.default_rng``, independent of torch): the subset order of run seed s is
drawn from ``[split_seed, s]`` (as for modular addition), the train/test hold-out from
``[split_seed, 0, 1]`` and the eval subset from ``[split_seed, 0, 2]``. (numpy ignores trailing
zeros of a seed list, hence the non-zero last entries.)

Loaded splits and tokenised features are cached in-process, keyed by the frozen task spec, so a
grid of many runs in one process reads and tokenises each task once.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.tasks.base import ClassificationData
from runner.tasks.natural_instructions import load_ni_task
from runner.tasks.pruning import class_proportional_order, subset_size
from runner.tasks.text_spec import TextClassificationTask
from runner.tokenization import encode, get_tokenizer

#: File extensions of local tables and the ``datasets`` builder that reads each.
BUILDERS: dict[str, str] = {"parquet": "parquet", "csv": "csv", "jsonl": "json", "json": "json"}

_HOLDOUT_STREAM = (0, 1)
_EVAL_STREAM = (0, 2)


@dataclass(frozen=True)
class TextSplits:
    """Untokenised train and test split with label ids."""

    train_texts: list[str]
    train_labels: np.ndarray  # int64 (n_train,)
    test_texts: list[str]
    test_labels: np.ndarray  # int64 (n_test,)
    n_classes: int
    class_names: tuple[str, ...] | None  # label strings in id order; None for integer labels


def _where(path: str) -> str:
    return (
        f"(relative paths are resolved against the current directory {os.getcwd()!r}; "
        "a hub dataset name must not look like a path)"
    )


def _looks_like_path(data: str) -> bool:
    return data.startswith(("/", "./", "../", "~")) or Path(data).suffix.lstrip(".") in BUILDERS


def _read_table(path: Path):
    """One local file as a ``datasets.Dataset``."""
    import datasets  # imported here: pyarrow and pandas load only when text data is used

    datasets.disable_progress_bars()  # cds-run draws its own progress; keep stderr readable

    builder = BUILDERS[path.suffix.lstrip(".")]
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def _split_files(directory: Path, split: str) -> list[Path]:
    candidates = (directory / f"{split}.{ext}" for ext in BUILDERS)
    return [path for path in candidates if path.is_file()]


def _load_tables(task: TextClassificationTask) -> tuple[dict, str]:
    """The raw splits of ``task``'s source as ``{split name: Dataset}``, and a description."""
    data = task.source
    path = Path(data).expanduser()
    if path.is_dir():
        splits = {}
        for split, field in ((task.train_split, "train_split"), (task.test_split, "test_split")):
            files = _split_files(path, split)
            if len(files) > 1:
                raise ValueError(
                    f"task.{field}: {str(path)!r} holds several files for split {split!r} "
                    f"({[f.name for f in files]}); keep one"
                )
            if files:
                splits[split] = _read_table(files[0])
        if task.train_split not in splits:
            found = sorted(p.name for p in path.iterdir() if p.suffix.lstrip(".") in BUILDERS)
            raise ValueError(
                f"task.train_split: no file {task.train_split}.parquet|csv|jsonl|json in "
                f"{str(path)!r} (found {found}); set task.train_split or task.data"
            )
        return splits, f"directory {str(path)!r}"
    if path.is_file():
        if path.suffix.lstrip(".") not in BUILDERS:
            raise ValueError(
                f"task.data: cannot read {str(path)!r}: the file type must be one of "
                f"{['.' + e for e in BUILDERS]} (or use a directory of such files)"
            )
        return {task.train_split: _read_table(path)}, f"file {str(path)!r}"
    if _looks_like_path(data):
        raise ValueError(f"task.data: no such file or directory {data!r} {_where(data)}")
    import datasets

    datasets.disable_progress_bars()
    try:
        loaded = datasets.load_dataset(data)
    except Exception as exc:  # the hub client raises many types; all mean "cannot load this"
        raise ValueError(
            f"task.data: cannot load hub dataset {data!r} ({type(exc).__name__}: {exc}); "
            f"if a local path was meant, it does not exist {_where(data)}"
        ) from exc
    return dict(loaded), f"hub dataset {data!r}"


def _column(table, column: str, field: str, split: str, where: str) -> list:
    if column not in table.column_names:
        raise ValueError(
            f"task.{field}: no column {column!r} in split {split!r} of {where} "
            f"(columns: {table.column_names}); set task.{field}"
        )
    return table.data.column(column).to_pylist()


def _check_texts(texts: list, split: str, where: str, column: str) -> list[str]:
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(
            f"task.text_column: row {bad} of split {split!r} of {where} has {texts[bad]!r} in "
            f"column {column!r}, not a string; clean the data or set task.text_column"
        )
    return texts


def label_ids(
    train: list, test: list, column: str = "label", known_n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, int, tuple[str, ...] | None]:
    """Class ids of the train and test labels, the number of classes, and the class names.

    Integer (or bool) labels are kept and must be 0..k-1 with every id present in ``train``;
    string labels become ids in sorted order of the distinct train values.
    """
    values = train + test
    fix = "map the labels to 0..k-1, or give them as strings"
    if all(isinstance(v, str) for v in values):
        names = tuple(sorted(set(train)))
        unseen = sorted(set(test) - set(names))
        if unseen:
            raise ValueError(
                f"task.label_column: test labels {unseen[:5]} of column {column!r} never occur "
                "in the train split, so they have no class id; fix the data or the split"
            )
        ids = {name: i for i, name in enumerate(names)}
        k = len(names)
        train_ids = np.array([ids[v] for v in train], dtype=np.int64)
        test_ids = np.array([ids[v] for v in test], dtype=np.int64)
    elif all(isinstance(v, (int, np.integer)) for v in values):
        names = None
        train_ids, test_ids = np.array(train, dtype=np.int64), np.array(test, dtype=np.int64)
        k = int(train_ids.max()) + 1 if len(train_ids) else 0
        present = set(np.unique(train_ids).tolist())
        test_ok = not len(test_ids) or 0 <= test_ids.min() <= test_ids.max() < k
        if present != set(range(k)) or not test_ok:
            found = sorted(present | set(np.unique(test_ids).tolist()))
            raise ValueError(
                f"task.label_column: integer labels of column {column!r} must be the class ids "
                f"0..k-1 with every id in the train split; found {found[:10]}; {fix}"
            )
    else:
        kinds = sorted({type(v).__name__ for v in values})
        raise ValueError(
            f"task.label_column: labels of column {column!r} must be all integers or all "
            f"strings, found {kinds}; {fix}"
        )
    if k < 2:
        raise ValueError(f"task.label_column: column {column!r} holds a single class; need >= 2")
    if known_n_classes is not None and k != known_n_classes:
        raise ValueError(
            f"task.label_column: column {column!r} has {k} classes, expected {known_n_classes} "
            "for this task name; check task.data and task.label_column"
        )
    return train_ids, test_ids, k, names


def _holdout(n: int, labels: list, test_fraction: float, split_seed: int) -> tuple[list, list]:
    """Train and test positions of a single split: a class-proportional seeded hold-out."""
    # Any consistent id map gives the same class partition; strings and ints both sort.
    classes = {v: i for i, v in enumerate(sorted(set(labels), key=repr))}
    ids = np.array([classes[v] for v in labels], dtype=np.int64)
    n_test = min(max(1, int(np.floor(test_fraction * n + 0.5))), n - 1)
    order = class_proportional_order(ids, [split_seed, *_HOLDOUT_STREAM])
    return np.sort(order[n_test:]).tolist(), np.sort(order[:n_test]).tolist()


@functools.lru_cache(maxsize=4)
def _load_splits(task: TextClassificationTask) -> TextSplits:
    if task.name == "natural_instructions":
        path = Path(task.source).expanduser()
        if not path.is_file():
            raise ValueError(f"task.data: no such file {task.source!r} {_where(task.source)}")
        ni = load_ni_task(path, include_definition=task.include_definition)
        single, where = (ni.texts, ni.labels), f"task file {str(path)!r}"
        two = None
    else:
        tables, where = _load_tables(task)
        train = tables.get(task.train_split)
        if train is None:
            raise ValueError(
                f"task.train_split: no split {task.train_split!r} in {where} "
                f"(splits: {sorted(tables)}); set task.train_split"
            )
        cols = (task.text_column, "text_column"), (task.label_column, "label_column")
        read = {
            split: [_column(table, c, f, split, where) for c, f in cols]
            for split, table in tables.items()
            if split in (task.train_split, task.test_split)
        }
        for split, (texts, _) in read.items():
            _check_texts(texts, split, where, task.text_column)
        if task.test_split in read:
            single, two = None, (read[task.train_split], read[task.test_split])
        else:
            single, two = read[task.train_split], None
    if two is not None:
        if task.test_fraction is not None:
            raise ValueError(
                f"task.test_fraction = {task.test_fraction} is for single-split sources, but "
                f"{where} has a {task.test_split!r} split; remove task.test_fraction"
            )
        (train_texts, train_raw), (test_texts, test_raw) = two
    else:
        if task.test_fraction is None:
            raise ValueError(
                f"task.test_fraction is required: {where} has no {task.test_split!r} split, so "
                "the test split is held out from it; set e.g. test_fraction: 0.2 (or "
                "task.test_split to an existing split)"
            )
        texts, raw = single
        train_pos, test_pos = _holdout(len(raw), raw, task.test_fraction, task.split_seed)
        train_texts, train_raw = [texts[i] for i in train_pos], [raw[i] for i in train_pos]
        test_texts, test_raw = [texts[i] for i in test_pos], [raw[i] for i in test_pos]
    train_labels, test_labels, k, names = label_ids(
        train_raw, test_raw, task.label_column, task.n_classes
    )
    return TextSplits(train_texts, train_labels, test_texts, test_labels, k, names)


def load_splits(task: TextClassificationTask) -> TextSplits:
    """The untokenised train and test split of ``task`` (cached in-process)."""
    # Only the fields that decide the raw splits key this cache: sweeping max_length or the
    # tokenizer must not reread the data.
    defaults = {"max_length": 256, "tokenizer": type(task.tokenizer)(), "eval_subset": None}
    return _load_splits(task.model_copy(update=defaults))


def train_split_size(task: TextClassificationTask) -> int:
    """Samples in the train split (to turn a data fraction into a count); no tokenising."""
    return len(load_splits(task).train_labels)


@dataclass(frozen=True)
class _Tokenised:
    train_features: dict[str, np.ndarray]
    train_labels: np.ndarray
    test_features: dict[str, np.ndarray]
    test_labels: np.ndarray
    n_classes: int
    vocab_size: int
    pad_token_id: int


def eval_positions(task: TextClassificationTask, test_labels: np.ndarray) -> np.ndarray:
    """Positions in the test split evaluated on: all, or the fixed seeded eval subset (sorted)."""
    if task.eval_subset is None:
        return np.arange(len(test_labels))
    if task.eval_subset > len(test_labels):
        raise ValueError(
            f"task.eval_subset = {task.eval_subset} exceeds the test split of "
            f"{len(test_labels)} samples; lower it or leave it out (full test split)"
        )
    order = class_proportional_order(test_labels, [task.split_seed, *_EVAL_STREAM])
    return np.sort(order[: task.eval_subset])


@functools.lru_cache(maxsize=2)
def _tokenised(task: TextClassificationTask) -> _Tokenised:
    splits = load_splits(task)
    # The whole train split, never the n-subset: the vocabulary must not change with n.
    tokenizer = get_tokenizer(task, splits.train_texts)
    keep = eval_positions(task, splits.test_labels)
    return _Tokenised(
        train_features=encode(tokenizer, splits.train_texts, task.max_length),
        train_labels=splits.train_labels,
        test_features=encode(tokenizer, [splits.test_texts[i] for i in keep], task.max_length),
        test_labels=splits.test_labels[keep],
        n_classes=splits.n_classes,
        vocab_size=len(tokenizer),
        pad_token_id=int(tokenizer.pad_token_id),
    )


def load_text_task(task: TextClassificationTask, n_samples: int, seed: int) -> ClassificationData:
    """The n-sample training subset for ``seed`` and the test split (or eval subset), tokenised.

    Parameters
    ----------
    task
        The task spec.
    n_samples
        Training-subset size (samples): the first n of the seeded nested class-proportional order
        of the train split (:func:`runner.tasks.pruning.class_proportional_order`), in that order.
    seed
        Run seed; the order is drawn from ``[task.split_seed, seed]``.

    Returns
    -------
    ClassificationData
        ``input_ids`` and ``attention_mask`` int64 (n, task.max_length), labels int64.
    """
    data = _tokenised(task)
    n = subset_size(len(data.train_labels), n_samples=n_samples)
    order = class_proportional_order(data.train_labels, [task.split_seed, seed])
    chosen = order[:n]
    # A class with no training sample cannot be learnt at all: refuse, and say from which n on
    # every class is present for this seed.
    first_seen = [int(np.argmax(data.train_labels[order] == k)) for k in range(data.n_classes)]
    if max(first_seen) >= n:
        raise ValueError(
            f"n_samples = {n} leaves class(es) "
            f"{[k for k in range(data.n_classes) if first_seen[k] >= n]} without a training "
            f"sample (seed {seed}); raise n_samples to at least {max(first_seen) + 1}"
        )
    return ClassificationData(
        train_features={k: v[chosen] for k, v in data.train_features.items()},
        train_labels=data.train_labels[chosen],
        test_features=data.test_features,
        test_labels=data.test_labels,
        n_classes=data.n_classes,
        vocab_size=data.vocab_size,
        pad_token_id=data.pad_token_id,
    )


def clear_caches() -> None:
    """Forget the in-process caches (loaded splits and tokenised features)."""
    _load_splits.cache_clear()
    _tokenised.cache_clear()
