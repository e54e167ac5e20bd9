"""The real Natural-Instructions task846 file as a text classification task."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.tasks.natural_instructions import TEMPLATE, load_ni_task
from runner.tasks.text import load_splits, load_text_task, train_split_size
from runner.tasks.text_spec import TextClassificationTask

TASK846 = "natural_instructions/task846_pubmedqa_classification.json"


def test_task846_instances_labels_and_template(shared_data):
    ni = load_ni_task(shared_data / TASK846)
    assert len(ni.texts) == 6500
    assert {label: ni.labels.count(label) for label in set(ni.labels)} == {"yes": 3250, "no": 3250}
    raw = json.loads((shared_data / TASK846).read_text())
    assert ni.definition == raw["Definition"]  # a single string in this version of the file
    first = raw["Instances"][0]["input"]
    assert ni.texts[0] == TEMPLATE.format(definition=raw["Definition"], input=first)
    assert ni.texts[0].startswith("Definition: In this task, you are given a question")
    assert "\n\nInput: Question: " in ni.texts[0]


def test_task846_test_fraction_split_is_class_proportional_and_disjoint(shared_data, text_caches):
    task = TextClassificationTask(
        name="natural_instructions", data=str(shared_data / TASK846), test_fraction=0.2
    )
    splits = load_splits(task)
    assert splits.class_names == ("no", "yes")
    assert (len(splits.train_texts), len(splits.test_texts)) == (5200, 1300)
    assert np.bincount(splits.train_labels).tolist() == [2600, 2600]
    assert np.bincount(splits.test_labels).tolist() == [650, 650]
    # Inputs are unique in the file, so disjoint texts mean disjoint instances.
    assert not set(splits.train_texts) & set(splits.test_texts)
    assert len(set(splits.train_texts) | set(splits.test_texts)) == 6500
    assert train_split_size(task) == 5200
    # The hold-out is seeded: another split_seed holds out other instances.
    other = load_splits(task.model_copy(update={"split_seed": 1}))
    assert set(other.test_texts) != set(splits.test_texts)


def test_task846_tokenised_through_load_text_task(shared_data, text_caches):
    task = TextClassificationTask(
        name="natural_instructions",
        data=str(shared_data / TASK846),
        test_fraction=0.2,
        max_length=128,
        eval_subset=200,
        tokenizer={"vocab_size": 2000},
    )
    data = load_text_task(task, n_samples=60, seed=0)
    assert data.n_classes == 2
    assert data.train_features["input_ids"].shape == (60, 128)
    assert np.bincount(data.train_labels).tolist() == [30, 30]
    assert np.bincount(data.test_labels).tolist() == [100, 100]
    # Every sample opens with the same definition, so the first tokens agree across samples.
    ids = data.train_features["input_ids"]
    assert (ids[:, :5] == ids[0, :5]).all()


def _write_task(path, instances):
    path.write_text(json.dumps({"Definition": ["Say yes or no."], "Instances": instances}))
    return path


def test_instance_with_several_outputs_is_an_error(tmp_path):
    path = _write_task(
        tmp_path / "t.json",
        [
            {"id": "a", "input": "x", "output": ["yes"]},
            {"id": "b", "input": "y", "output": ["yes", "no"]},
        ],
    )
    with pytest.raises(ValueError, match=r"task.data: instance b .* has output \['yes', 'no'\]"):
        load_ni_task(path)


def test_not_a_task_file_is_an_error(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"Definition": "d"}))
    with pytest.raises(ValueError, match=r"task.data: .* \(missing key\(s\) \['Instances'\]\)"):
        load_ni_task(path)


def test_definition_list_is_joined_by_newlines(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"Definition": ["One.", "Two."], "Instances": [{"input": "x", "output": ["a"]}]})
    )
    assert load_ni_task(path).texts == ["Definition: One.\nTwo.\n\nInput: x"]


def test_without_definition_each_text_is_its_input(tmp_path):
    path = _write_task(
        tmp_path / "t.json",
        [{"input": "Question: a?", "output": ["yes"]}, {"input": "b", "output": ["no"]}],
    )
    assert load_ni_task(path, include_definition=False).texts == ["Question: a?", "b"]
    assert load_ni_task(path).texts[1] == "Definition: Say yes or no.\n\nInput: b"


def test_task846_without_definition_keeps_the_split_and_drops_the_prefix(shared_data, text_caches):
    task = TextClassificationTask(
        name="natural_instructions", data=str(shared_data / TASK846), test_fraction=0.2
    )
    bare = load_splits(task.model_copy(update={"include_definition": False}))
    full = load_splits(task)
    # The same instances on each side of the hold-out, each text now the raw input.
    assert bare.train_labels.tolist() == full.train_labels.tolist()
    assert all(
        f.endswith("\n\nInput: " + b) for f, b in zip(full.test_texts, bare.test_texts, strict=True)
    )
    assert not any("In this task, you are given" in t for t in bare.train_texts)
    assert bare.train_texts[0].startswith("Question: ")
    # The option changes the run (a new id), and is refused where there is no definition.
    assert task.model_copy(update={"include_definition": False}) != task
    with pytest.raises(ValueError, match=r"task.include_definition applies to task.name = "):
        TextClassificationTask(name="imdb", include_definition=False)


def test_missing_task_file_and_missing_test_fraction(tmp_path, text_caches):
    with pytest.raises(ValueError, match=r"task.test_fraction is required for task.name"):
        TextClassificationTask(name="natural_instructions", data="t.json")
    with pytest.raises(ValueError, match=r"task.data is required for task.name"):
        TextClassificationTask(name="natural_instructions", test_fraction=0.2)
    task = TextClassificationTask(
        name="natural_instructions", data=str(tmp_path / "nope.json"), test_fraction=0.2
    )
    with pytest.raises(ValueError, match=r"task.data: no such file .*nope.json.* current dir"):
        load_splits(task)
