"""A held-out set the user names (``val_indices``: images a parent trained elsewhere never saw), and the warning
when the parent's training data may include the held-out images the rewards are computed on (issue #20, item 7)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sanas.runs.config import RunConfig
from sanas.runs.parent import parent_provenance
from sanas.training import load_dataset, split_data

DATASET = load_dataset("synthetic", train_size=200, test_size=20)


def index_file(tmp_path: Path, text: str, name: str = "held-out.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_listed_images_are_held_out_and_the_rest_trains(tmp_path) -> None:
    path = index_file(tmp_path, "# the parent never saw these\n3, 1\n150\n7 9\n")
    data = split_data(DATASET, val_indices=path)
    assert sorted(data.val_indices.tolist()) == [1, 3, 7, 9, 150]
    assert sorted(data.train_indices.tolist()) == sorted(set(range(200)) - {1, 3, 7, 9, 150})
    given = data.split["val_indices"]
    assert given == {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "count": 5}
    assert data.split["val_fraction"] is None and data.split["val_size"] == 5
    again = split_data(DATASET, val_indices=path, seed=1)  # the seed only orders the training part
    assert sorted(again.val_indices.tolist()) == [1, 3, 7, 9, 150]


@pytest.mark.parametrize(("text", "message"), [
    ("1\n2\nthree\n", "line 3: 'three' is not an integer; expected indices into the training set, 0 to 199"),
    ("1\n200\n", "index 200 is outside the training set of 200 images; expected 0 to 199"),
    ("-1\n", "index -1 is outside the training set"),
    ("4\n5\n4\n", "index 4 is listed 2 times; expected each held-out image once"),
    ("# nothing\n\n", "lists no index"),
    (" ".join(str(i) for i in range(200)), "holds out all 200 training images"),
])
def test_a_bad_index_file_is_refused_naming_the_file_and_the_value(tmp_path, text, message) -> None:
    path = index_file(tmp_path, text)
    with pytest.raises(ValueError, match="val_indices file") as e:
        split_data(DATASET, val_indices=path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_missing_file_and_a_reward_on_test_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        split_data(DATASET, val_indices=tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match="val_indices with reward_on_test"):
        split_data(DATASET, val_indices=index_file(tmp_path, "1\n"), reward_on_test=True)


def inherit_config(parent: Path | None) -> RunConfig:
    search = {} if parent is None else {"parent": str(parent)}
    return RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "recipe": {"evaluation": "inherit"},
                                             "search": search})


def parent_folder(tmp_path: Path, split: dict | None, name: str = "parent") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    record = {"space": {}, "tokens": []} if split is None else {"space": {}, "tokens": [], "split": split}
    (folder / "model.json").write_text(json.dumps(record))
    return folder


def test_a_parent_trained_on_the_same_split_is_silent(tmp_path) -> None:
    split = split_data(DATASET, seed=0).split
    folder = parent_folder(tmp_path, {**split, "train_subset": 50})  # a subset of the same training part
    assert parent_provenance(inherit_config(folder), None, object(), {**split, "val_subset": 10}) is None
    given = split_data(DATASET, val_indices=index_file(tmp_path, "1 2 3\n")).split
    moved = parent_folder(tmp_path, {**given, "val_indices": {**given["val_indices"], "file": "/elsewhere/h.txt"}},
                          "moved")
    assert parent_provenance(inherit_config(moved), None, object(), given) is None  # same file content


def test_a_parent_of_unknown_provenance_warns(tmp_path) -> None:
    split = split_data(DATASET).split
    own_model = parent_provenance(inherit_config(None), None, object(), split)  # a ModelSpace's trained model
    assert own_model is not None and "the parent's training data is unknown (a model given with the space)" in own_model
    assert "--val-indices FILE" in own_model and "\n" not in own_model
    folder = parent_folder(tmp_path, None)
    unrecorded = parent_provenance(inherit_config(folder), None, object(), split)
    assert unrecorded is not None and f"{folder} records no data split" in unrecorded


@pytest.mark.parametrize("other", [{"seed": 1}, {"val_fraction": 0.2}, {"reward_on_test": True},
                                   {"dataset": "fashion-mnist"}])
def test_a_parent_trained_on_another_split_warns(tmp_path, other) -> None:
    split = split_data(DATASET).split
    folder = parent_folder(tmp_path, {**split, **other})
    warning = parent_provenance(inherit_config(folder), None, object(), split)
    assert warning is not None and f"the parent {folder} was trained on another split" in warning
    assert "\n" not in warning


def test_no_warning_without_inheritance_or_with_the_reward_on_the_test_set(tmp_path) -> None:
    split = split_data(DATASET).split
    scratch = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    assert parent_provenance(scratch, None, object(), split) is None
    on_test = split_data(DATASET, reward_on_test=True).split
    assert parent_provenance(inherit_config(None), None, object(), on_test) is None
    assert parent_provenance(inherit_config(None), None, None, split) is None  # no parent (trained here, later)
