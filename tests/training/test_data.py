"""Datasets and splits: CIFAR-10 file format, the restricted unpickler, real Fashion-MNIST, held-out splits."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from _cifar_files import write_cifar10
from sanas.training import DatasetError, load_dataset, prepare_data, split_data
from sanas.training import data as data_module
from sanas.training.data import FASHION_MNIST_MEAN, FASHION_MNIST_ROOT, FASHION_MNIST_STD


def _random_cifar(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), [int(x) for x in rng.integers(0, 10, n)]


def test_cifar10_round_trip_in_the_official_layout(tmp_path: Path) -> None:
    train, test = _random_cifar(23, 0), _random_cifar(7, 1)
    folder = write_cifar10(tmp_path, train, test)
    assert sorted(p.name for p in folder.iterdir()) == [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    # The files are what the official ones are: protocol-2 pickles of a dict with bytes keys.
    raw = (folder / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3072

    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_images.shape == (23, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert torch.equal(ds.train_images, torch.from_numpy(train[0]))
    assert ds.train_labels.tolist() == train[1]
    assert torch.equal(ds.test_images, torch.from_numpy(test[0]))
    assert ds.test_labels.tolist() == test[1]
    assert ds.mean == (0.49139968, 0.48215827, 0.44653124) and ds.in_channels == 3


def test_cifar10_reads_files_pickled_by_an_older_numpy(tmp_path: Path) -> None:
    # The official files (Python 2, numpy 1.x) name numpy.core.multiarray._reconstruct; newer numpy writes
    # numpy._core. Rewrite the global in a file to the old spelling and read it back.
    folder = write_cifar10(tmp_path, _random_cifar(10, 2), _random_cifar(5, 3))
    path = folder / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_dataset("cifar10", tmp_path).test_images.shape == (5, 3, 32, 32)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("touch pwned",)


def test_restricted_unpickler_refuses_code_execution(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, _random_cifar(10, 0), _random_cifar(5, 1))
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Evil()}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(DatasetError, match=r"data_batch_3.*refusing to load global (posix|os)\.system"):
            load_dataset("cifar10", tmp_path)
    finally:
        os.chdir(cwd)
    assert not marker.exists()


@pytest.mark.parametrize(("content", "expected"), [
    (b"not a pickle at all", "corrupt CIFAR-10 file"),
    (pickle.dumps([1, 2, 3], protocol=2), "expected a dict with keys"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2), "N×3072 uint8"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, protocol=2), r"in \[0, 9\]"),
])
def test_corrupt_cifar10_file_names_path_and_expectation(tmp_path: Path, content: bytes, expected: str) -> None:
    folder = write_cifar10(tmp_path, _random_cifar(10, 0), _random_cifar(5, 1))
    (folder / "data_batch_2").write_bytes(content)
    with pytest.raises(DatasetError, match=expected) as info:
        load_dataset("cifar10", tmp_path)
    assert str(folder / "data_batch_2") in str(info.value)


def test_missing_cifar10_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cifar-10-batches-py") as info:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path) in str(info.value)
    folder = write_cifar10(tmp_path, _random_cifar(10, 0), _random_cifar(5, 1))
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match=r"missing CIFAR-10 file .*data_batch_4"):
        load_dataset("cifar10", tmp_path)


def test_download_without_internet_says_so_and_names_the_root(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(data_module.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match=r"could not download https://www\.cs\.toronto\.edu") as info:
        load_dataset("cifar10", tmp_path / "root", download=True)
    assert str(tmp_path / "root") in str(info.value) and "internet" in str(info.value)
    assert not list((tmp_path / "root").glob("*.part"))


def _archive(tmp_path: Path) -> bytes:
    src = tmp_path / "src"
    write_cifar10(src, _random_cifar(10, 0), _random_cifar(5, 1))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_download_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _archive(tmp_path)
    monkeypatch.setattr(data_module.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(blob))
    with pytest.raises(DatasetError, match=r"corrupt download .*MD5 .*expected c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", tmp_path / "root", download=True)
    # With the checksum matching, the archive is unpacked and read.
    import hashlib

    monkeypatch.setattr(data_module, "CIFAR10_MD5", hashlib.md5(blob).hexdigest())
    assert load_dataset("cifar10", tmp_path / "root", download=True).train_images.shape == (10, 3, 32, 32)


def _fashion_root() -> Path:
    if not (FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is not installed in {FASHION_MNIST_ROOT}: apt-get install dataset-fashion-mnist "
                    f"(make test installs it)")
    return FASHION_MNIST_ROOT


def test_fashion_mnist_from_the_debian_files() -> None:
    ds = load_dataset("fashion-mnist", _fashion_root())
    assert ds.train_images.shape == (60000, 1, 32, 32) and ds.test_images.shape == (10000, 1, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.in_channels == 1
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    # 28×28 padded by 2 with zeros on every side.
    assert ds.train_images[:, :, :2].max() == 0 and ds.train_images[:, :, :, 30:].max() == 0
    assert ds.train_images[:, :, 2:30, 2:30].float().mean() > 50
    # The stored normalisation constants are this training set's statistics.
    scaled = ds.train_images.double() / 255
    assert scaled.mean().item() == pytest.approx(FASHION_MNIST_MEAN[0], abs=1e-6)
    assert scaled.std().item() == pytest.approx(FASHION_MNIST_STD[0], abs=1e-6)


def test_corrupt_fashion_mnist_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing Fashion-MNIST file .*train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))
    with pytest.raises(DatasetError, match=r"corrupt Fashion-MNIST file .*train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="expected a gzip-compressed IDX file"):
        load_dataset("fashion-mnist", tmp_path)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist', expected one of cifar10, fashion-mnist"):
        load_dataset("mnist")


def test_synthetic_is_deterministic_and_class_dependent() -> None:
    a, b = load_dataset("synthetic", seed=3), load_dataset("synthetic", seed=3)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, load_dataset("synthetic", seed=4).train_images)
    means = torch.stack([a.train_images[a.train_labels == c].float().mean(0) for c in range(10)])
    # Class means differ far more than the noise within a class would explain.
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 100


def test_held_out_split_is_disjoint_balanced_and_seeded() -> None:
    ds = load_dataset("synthetic", train_size=1000, test_size=10)
    split = split_data(ds, val_fraction=0.1, seed=7)
    train, val = set(split.train_indices.tolist()), set(split.val_indices.tolist())
    assert not train & val and len(train | val) == 1000
    assert torch.bincount(ds.train_labels[split.val_indices]).tolist() == [10] * 10
    assert split.split["val_size"] == 100 and split.split["seed"] == 7 and not split.reward_on_test
    again = split_data(ds, val_fraction=0.1, seed=7)
    assert torch.equal(again.val_indices, split.val_indices)
    assert not torch.equal(split_data(ds, val_fraction=0.1, seed=8).val_indices, split.val_indices)
    # The reward split is the held-out part of the TRAINING images.
    images, labels = split.val()
    assert torch.equal(labels, ds.train_labels[split.val_indices])
    assert torch.equal(images, ds.train_images[split.val_indices])


def test_subsets_are_class_balanced_and_stay_disjoint() -> None:
    ds = load_dataset("synthetic", train_size=1000, test_size=10)
    split = split_data(ds, train_subset=205, val_subset=30, seed=1)
    counts = torch.bincount(ds.train_labels[split.train_indices], minlength=10).tolist()
    assert sum(counts) == 205 and max(counts) - min(counts) <= 1
    assert torch.bincount(ds.train_labels[split.val_indices]).tolist() == [3] * 10
    assert not set(split.train_indices.tolist()) & set(split.val_indices.tolist())
    with pytest.raises(ValueError, match=r"train_subset is 5000, expected an integer in \[1, 900\]"):
        split_data(ds, train_subset=5000)


def test_reward_on_test_reproduces_paddleslim_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    ds = load_dataset("synthetic", train_size=100, test_size=20)
    split = split_data(ds, reward_on_test=True)
    assert "TEST set" in capsys.readouterr().err
    assert split.val_indices is None and len(split.train_indices) == 100
    assert torch.equal(split.val()[0], ds.test_images)


def test_prepare_data_moves_once() -> None:
    data = prepare_data("synthetic", train_size=50, test_size=10)
    assert data.to("cpu") is data
    # 5 images per class: 10 % rounds to 0, but every class keeps one held-out image.
    assert data.split["train_size"] == 40 and data.split["val_size"] == 10
