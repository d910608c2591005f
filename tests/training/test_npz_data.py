"""The ``npz`` dataset: ``x_train, y_train, x_test, y_test`` arrays in a NumPy .npz file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from sanas.training import DatasetError, load_dataset, prepare_data
from sanas.training.data import dataset_shape


def _arrays(n_train: int = 12, n_test: int = 4, shape: tuple[int, ...] = (3, 8, 6), classes: int = 3,
            seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
            "y_train": np.arange(n_train) % classes,
            "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
            "y_test": np.arange(n_test) % classes}


def _save(tmp_path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> Path:
    path = tmp_path / "data.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def test_channels_first_round_trip_with_class_names(tmp_path: Path) -> None:
    arrays = _arrays()
    path = _save(tmp_path, {**arrays, "classes": np.array(["cat", "dog", "emu"])}, compressed=True)
    ds = load_dataset("npz", path)
    assert ds.train_images.shape == (12, 3, 8, 6) and ds.image_size == (8, 6) and ds.train_images.dtype == torch.uint8
    assert torch.equal(ds.train_images, torch.from_numpy(arrays["x_train"]))
    assert torch.equal(ds.test_images, torch.from_numpy(arrays["x_test"]))
    assert ds.train_labels.tolist() == arrays["y_train"].tolist() and ds.train_labels.dtype == torch.int64
    assert ds.classes == ("cat", "dog", "emu") and ds.num_classes == 3 and ds.source == str(path)
    scaled = ds.train_images.double() / 255
    assert ds.mean == pytest.approx(scaled.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert ds.std == pytest.approx(scaled.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)
    assert dataset_shape("npz", root=path) == (3, 3)


def test_channels_last_grey_and_keras_labels(tmp_path: Path) -> None:
    arrays = _arrays(shape=(8, 6, 3))
    ds = load_dataset("npz", _save(tmp_path, arrays))
    assert torch.equal(ds.train_images, torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2))
    assert ds.classes == ("0", "1", "2")
    grey = _arrays(shape=(5, 7))
    grey["y_train"] = grey["y_train"].reshape(-1, 1).astype(np.uint8)  # Keras' N×1
    ds = load_dataset("npz", _save(tmp_path, grey))
    assert ds.train_images.shape == (12, 1, 5, 7) and ds.train_labels.tolist() == grey["y_train"][:, 0].tolist()
    assert torch.equal(ds.test_images[:, 0], torch.from_numpy(grey["x_test"]))
    single = _arrays(shape=(1, 9, 9))  # N×1×H×W
    assert load_dataset("npz", _save(tmp_path, single)).train_images.shape == (12, 1, 9, 9)


def test_input_size_and_channels_follow_the_fit_rule(tmp_path: Path) -> None:
    arrays = _arrays(shape=(10, 16, 3))
    path = _save(tmp_path, arrays)
    ds = load_dataset("npz", path, input_size=(6, 6), channels=1)
    assert ds.train_images.shape == (12, 1, 6, 6)
    image = Image.fromarray(arrays["x_train"][0]).convert("L")
    expected = np.asarray(ImageOps.fit(image, (6, 6), method=Image.Resampling.BILINEAR))
    assert np.array_equal(ds.train_images[0, 0].numpy(), expected)
    assert dataset_shape("npz", channels=1, root=path) == (1, 3)
    with pytest.raises(DatasetError, match=r"^the images of .* x_train are 10×16, smaller than the input size "
                                           r"12×12; expected at least 12×12: images are shrunk .* never enlarged"):
        load_dataset("npz", path, input_size=(12, 12))
    with pytest.raises(ValueError, match=r"^input_size is \[0, 0\], expected two positive integers H W"):
        load_dataset("npz", path, input_size=[0, 0])
    with pytest.raises(ValueError, match=r"^channels is 4, expected 1 \(grey\) or 3 \(RGB\)$"):
        load_dataset("npz", path, channels=4)


def test_prepare_data_splits_an_npz(tmp_path: Path) -> None:
    data = prepare_data("npz", _save(tmp_path, _arrays(n_train=30)), val_fraction=0.2, input_size=(4, 4))
    assert data.split["train_size"] == 24 and data.split["val_size"] == 6 and data.dataset.image_size == (4, 4)


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("y_test"), r"data.npz lacks y_test \(it holds x_train, y_train, x_test\); expected a NumPy "
                                r".npz file \(np.savez\) with x_train, y_train, x_test, y_test"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), r"x_train holds 12 images but y_train 11 labels; expected one "
                                                    r"label per image"),
    (lambda a: a.update(x_test=a["x_test"].astype(np.float32) / 255), r"x_test is float32, expected uint8 images"),
    (lambda a: a.update(x_train=a["x_train"][:, :, :2, :3]), r"x_train has shape \(12, 3, 2, 3\) \(axes 1 and 3 "
                                                             r"could both be the channels\); expected uint8 images"),
    (lambda a: a.update(x_train=a["x_train"][:, :2]), r"x_train has shape \(12, 2, 8, 6\); expected uint8 images"),
    (lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]), r"x_test holds no image"),
    (lambda a: a.update(y_test=a["y_test"] * 1.0), r"y_test is float64 of shape \(4,\); expected 4 integer class "
                                                   r"labels"),
    (lambda a: a.update(y_test=a["y_test"] - 1), r"label -1 is negative; expected class indices 0, 1, …"),
    (lambda a: a.update(classes=np.array(["a", "b"])), r"label 2 has no class name; expected labels 0 to 1"),
    (lambda a: a.update(x_test=a["x_test"][:, :1], ), r"x_train images are 3×8×6 \(C×H×W\) but x_test's 1×8×6"),
    (lambda a: a.update(classes=np.array([1, 2, 3])), r"classes is int64 of shape \(3,\); expected one name"),
])
def test_bad_arrays_are_named_with_what_was_expected(tmp_path: Path, change, message: str) -> None:
    arrays = _arrays()
    change(arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset("npz", _save(tmp_path, arrays))


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"^missing .npz file .*nothing.npz: expected a NumPy .npz file"):
        load_dataset("npz", tmp_path / "nothing.npz")
    with pytest.raises(ValueError, match=r"^the npz dataset needs root: an .npz file \(--data-root\)$"):
        load_dataset("npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match=r"^corrupt .npz file .*garbage.npz: "):
        load_dataset("npz", garbage)
    good = _save(tmp_path, _arrays())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"^corrupt .npz file .*truncated.npz: "):
        load_dataset("npz", truncated)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(DatasetError, match=r"single.npy holds a single array; expected a NumPy .npz"):
        load_dataset("npz", single)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**_arrays(), "classes": np.array([{"evil": 1}, 2, 3], dtype=object)})
    with pytest.raises(DatasetError, match=r"^corrupt .npz file .*pickled.npz: .*allow_pickle"):
        load_dataset("npz", pickled)
