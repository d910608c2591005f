"""Datasets held in memory as uint8 tensors, and the train / held-out / test splits the trainer uses.

Three datasets, all 32×32 (what the DARTS CIFAR network and its auxiliary head expect):

* ``cifar10``: the ``cifar-10-batches-py`` pickle files (``data_batch_1..5``, ``test_batch``), read with a
  restricted unpickler that only admits what that format needs. ``download=True`` fetches the official
  archive and checks its MD5.
* ``fashion-mnist``: the IDX ``.gz`` files (default root: the Debian package ``dataset-fashion-mnist``).
  The 28×28 grey images are zero-padded to 32×32 and kept grey: the network is built with
  ``in_channels=1`` (replicating to three channels would only triple the stem's input work).
* ``synthetic``: deterministic, class-dependent images for fast tests; needs no files.

The reward is computed on a held-out, class-balanced part of the *training* set (:func:`split_data`), never
on the test set, unless PaddleSlim's protocol is asked for explicitly.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import inspect
import os
import pickle
import shutil
import struct
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy >= 2 moved it; the official CIFAR files name the old location, both map here.
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATASETS",
    "DEFAULT_DATASET",
    "DEFAULT_VAL_FRACTION",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "TrainingData",
    "dataset_shape",
    "default_root",
    "load_dataset",
    "prepare_data",
    "read_index_file",
    "split_data",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
# Over the 60,000 training images after padding to 32×32 (the padding is part of what the network sees).
FASHION_MNIST_MEAN = (0.21899983,)
FASHION_MNIST_STD = (0.33181137,)
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")


class DatasetError(RuntimeError):
    """A dataset's files are missing, corrupt or cannot be fetched; the message names the path."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset in memory: uint8 ``N×C×32×32`` images and int64 labels.

    >>> data = load_dataset("synthetic", train_size=100, test_size=20)
    >>> data.train_images.shape, data.train_images.dtype, data.in_channels
    (torch.Size([100, 3, 32, 32]), torch.uint8, 3)
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10
    source: str = ""

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every tensor on ``device`` (one copy; uint8 stays uint8)."""
        return replace(self, train_images=self.train_images.to(device), train_labels=self.train_labels.to(device),
                       test_images=self.test_images.to(device), test_labels=self.test_labels.to(device))


# --------------------------------------------------------------------------------------------- CIFAR-10

class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals a ``cifar-10-batches-py`` file needs (numpy arrays, bytes); anything else —
    ``os.system``, ``builtins.eval``, ... — is refused, so a tampered file cannot run code."""

    ALLOWED: dict[tuple[str, str], Any] = {  # noqa: RUF012 - a constant table
        ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes in protocol 2 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: not part of the CIFAR-10 "
                                         f"format") from None


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 batch file → (uint8 N×3×32×32 images, int64 labels)."""
    if not path.is_file():
        raise DatasetError(f"missing CIFAR-10 file {path}: expected the cifar-10-batches-py layout "
                           f"(data_batch_1..5, test_batch)")
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DatasetError(f"corrupt CIFAR-10 file {path}: {e}; expected a pickled dict with b'data' "
                           f"(N×3072 uint8) and b'labels'") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"corrupt CIFAR-10 file {path}: expected a dict with keys b'data' and b'labels', "
                           f"got {type(batch).__name__}")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"corrupt CIFAR-10 file {path}: b'data' is {type(data).__name__} {shape}, "
                           f"expected an N×3072 uint8 array")
    labels_np = np.asarray(labels)
    if labels_np.shape != (data.shape[0],) or labels_np.dtype.kind not in "iu" or \
            (labels_np.size and (labels_np.min() < 0 or labels_np.max() > 9)):
        raise DatasetError(f"corrupt CIFAR-10 file {path}: b'labels' must be {data.shape[0]} integers in [0, 9]")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels_np.astype(np.int64))


def _download_cifar10(root: Path) -> None:
    """Fetch and unpack the official archive into ``root`` after checking its MD5."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    if not archive.is_file():
        part = archive.with_suffix(".gz.part")
        try:
            with urllib.request.urlopen(CIFAR10_URL, timeout=60) as response, part.open("wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as e:
            part.unlink(missing_ok=True)
            raise DatasetError(f"could not download {CIFAR10_URL} ({e}); without internet access place the "
                               f"extracted cifar-10-batches-py/ folder (or the archive) in {root}") from e
        os.replace(part, archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    if md5 != CIFAR10_MD5:
        raise DatasetError(f"corrupt download {archive}: MD5 {md5}, expected {CIFAR10_MD5}; delete it and retry")
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # Python < 3.11.4 has no extraction filters: refuse links and paths leaving root ourselves
            base = root.resolve()
            for member in tar.getmembers():
                if member.issym() or member.islnk() or not (base / member.name).resolve().is_relative_to(base):
                    raise DatasetError(f"refusing to extract {member.name!r} from {archive}: it leaves {root}")
            tar.extractall(root)


def _load_cifar10(root: Path, download: bool) -> Dataset:
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and (download or (root / "cifar-10-python.tar.gz").is_file()):
        _download_cifar10(root)
    if not folder.is_dir():
        raise DatasetError(f"CIFAR-10 not found: expected the folder {folder} (data_batch_1..5, test_batch); "
                           f"pass download=True (needs internet) or place the extracted files there")
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    test_images, test_labels = _read_cifar_batch(folder / "test_batch")
    return Dataset("cifar10", torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                   test_images, test_labels, CIFAR10_MEAN, CIFAR10_STD, source=str(folder))


# ---------------------------------------------------------------------------------------- Fashion-MNIST

def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"missing Fashion-MNIST file {path}: expected the IDX .gz files of the Debian package "
                           f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or of the original site")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"corrupt Fashion-MNIST file {path}: {e}; expected a gzip-compressed IDX file") from e
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise DatasetError(f"corrupt Fashion-MNIST file {path}: expected IDX magic number {magic:#010x}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(f"corrupt Fashion-MNIST file {path}: header says {shape} bytes of data, "
                           f"file holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _load_fashion_mnist(root: Path) -> Dataset:
    def part(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", 0x803, 3)
        labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 0x801, 1)
        if len(images) != len(labels) or images.shape[1:] != (28, 28) or (labels.size and labels.max() > 9):
            raise DatasetError(f"corrupt Fashion-MNIST files {prefix}-* in {root}: {images.shape} images, "
                               f"{labels.shape} labels; expected N×28×28 images and N labels in [0, 9]")
        padded = torch.zeros(len(images), 1, 32, 32, dtype=torch.uint8)
        padded[:, 0, 2:30, 2:30] = torch.from_numpy(images.copy())
        return padded, torch.from_numpy(labels.astype(np.int64))

    train, test = part("train"), part("t10k")
    return Dataset("fashion-mnist", *train, *test, FASHION_MNIST_MEAN, FASHION_MNIST_STD, source=str(root))


# -------------------------------------------------------------------------------------------- synthetic

def _synthetic(train_size: int, test_size: int, channels: int, seed: int, num_classes: int = 10) -> Dataset:
    """Each class is a smooth random prototype; images are a prototype plus noise, shifted by a few pixels."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.nn.functional.interpolate(torch.rand(num_classes, channels, 4, 4, generator=g),
                                                 size=(32, 32), mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        x = 0.7 * prototypes[labels] + 0.3 * torch.rand(n, channels, 32, 32, generator=g)
        shifts = torch.randint(-2, 3, (2,), generator=g).tolist()  # one shift per split: cheap, still varied
        x = torch.roll(x, shifts=shifts, dims=(2, 3))
        return (x * 255).round().clamp(0, 255).to(torch.uint8), labels

    train, test = make(train_size), make(test_size)
    scaled = train[0].float() / 255
    mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
    std = tuple(scaled.std(dim=(0, 2, 3)).tolist())
    return Dataset("synthetic", *train, *test, mean, std, num_classes, source=f"synthetic(seed={seed})")


@dataclass(frozen=True)
class DatasetSpec:
    """What is known of a registered dataset before it is loaded (the CLI's choices, the config's space shape)."""

    in_channels: int | None  # None: the ``channels`` setting (synthetic)
    num_classes: int
    description: str


#: The datasets :func:`load_dataset` knows — the one registry behind ``prepare_data(name)``, the config's
#: ``[data] dataset`` and ``--dataset``. To add one: an entry here and a branch in :func:`load_dataset`.
DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(3, 10, "CIFAR-10, the cifar-10-batches-py pickles (--download fetches them)"),
    "fashion-mnist": DatasetSpec(1, 10, "Fashion-MNIST from Debian's dataset-fashion-mnist, padded to 32×32"),
    "synthetic": DatasetSpec(None, 10, "random class prototypes plus noise, for tests and smoke runs"),
}
#: The dataset of a search that names none.
DEFAULT_DATASET = "fashion-mnist"
#: The held-out fraction of each class that rewards are computed on.
DEFAULT_VAL_FRACTION = 0.1


def dataset_shape(name: str, channels: int | None = None) -> tuple[int, int]:
    """``(in_channels, num_classes)`` of registered dataset ``name``, without loading it.

    >>> dataset_shape("fashion-mnist"), dataset_shape("synthetic", channels=1)
    ((1, 10), (1, 10))
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if spec.in_channels is None:
        default = inspect.signature(load_dataset).parameters["channels"].default
        return int(default if channels is None else channels), spec.num_classes
    return spec.in_channels, spec.num_classes


def default_root(name: str) -> Path:
    """Where ``name`` is looked for when no root is given (``$SANAS_DATA`` overrides the CIFAR-10 one)."""
    if name == "fashion-mnist":
        return FASHION_MNIST_ROOT
    return Path(os.environ.get("SANAS_DATA", "~/.cache/sanas")).expanduser() / name


def load_dataset(name: str, root: str | Path | None = None, download: bool = False, *,
                 train_size: int = 2000, test_size: int = 500, channels: int = 3, seed: int = 0) -> Dataset:
    """Load ``cifar10``, ``fashion-mnist`` or ``synthetic`` into memory (CPU, uint8).

    ``root`` defaults to :func:`default_root`. ``download`` only applies to CIFAR-10. ``train_size``,
    ``test_size``, ``channels`` and ``seed`` only apply to ``synthetic``.

    >>> load_dataset("synthetic", train_size=50, test_size=10, channels=1).test_images.shape
    torch.Size([10, 1, 32, 32])
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS)}")
    if name == "synthetic":
        return _synthetic(train_size, test_size, channels, seed)
    path = Path(root).expanduser() if root is not None else default_root(name)
    if name == "cifar10":
        return _load_cifar10(path, download)
    return _load_fashion_mnist(path)


# ----------------------------------------------------------------------------------------------- splits

@dataclass
class TrainingData:
    """A dataset split for the trainer: training indices, held-out (reward) indices, and the test set.

    ``val_*`` is what the reward is computed on: a class-balanced held-out part of the training set, or —
    only with ``reward_on_test`` (PaddleSlim's protocol) — the test set. Build it with :func:`split_data`.
    """

    dataset: Dataset
    train_indices: torch.Tensor
    val_indices: torch.Tensor | None
    reward_on_test: bool = False
    split: dict[str, Any] = field(default_factory=dict)
    _on_device: dict[str, TrainingData] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.dataset.train_images.device

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def in_channels(self) -> int:
        return self.dataset.in_channels

    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of the training part."""
        return self.dataset.train_images[self.train_indices], self.dataset.train_labels[self.train_indices]

    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) the reward is computed on."""
        if self.val_indices is None:
            return self.dataset.test_images, self.dataset.test_labels
        return self.dataset.train_images[self.val_indices], self.dataset.train_labels[self.val_indices]

    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.test_images, self.dataset.test_labels

    def to(self, device: torch.device | str) -> TrainingData:
        """This split on ``device``; the copy is made once and reused by later calls."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = TrainingData(
                self.dataset.to(device), self.train_indices.to(device),
                None if self.val_indices is None else self.val_indices.to(device), self.reward_on_test,
                dict(self.split))
        return self._on_device[key]


def _balanced_take(labels: torch.Tensor, per_class: Sequence[int], g: torch.Generator) -> torch.Tensor:
    """Seeded random pick of ``per_class[c]`` indices of each class ``c``, in random order overall."""
    picked = []
    for c, k in enumerate(per_class):
        members = torch.nonzero(labels == c).flatten()
        if k > len(members):
            raise ValueError(f"class {c} has {len(members)} images, cannot take {k}")
        picked.append(members[torch.randperm(len(members), generator=g)[:k]])
    out = torch.cat(picked)
    return out[torch.randperm(len(out), generator=g)]


def _spread(total: int, num_classes: int) -> list[int]:
    return [total // num_classes + (1 if c < total % num_classes else 0) for c in range(num_classes)]


def read_index_file(path: str | os.PathLike[str], size: int) -> tuple[torch.Tensor, str]:
    """The indices listed in ``path`` (0-based positions in a training set of ``size`` images) and the file's
    SHA-256. Integers separated by whitespace or commas; ``#`` starts a comment. Raises ``ValueError`` naming the
    file and the first bad value: not an integer, outside ``[0, size)``, repeated, none at all, or every image.
    """
    shown = repr(os.fspath(path))
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"val_indices file {shown} does not exist") from None
    except OSError as e:
        raise ValueError(f"val_indices file {shown} cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"val_indices file {shown} is not text; expected integers, one per line "
                         f"or separated by commas") from None
    values: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        for word in line.split("#", 1)[0].replace(",", " ").split():
            try:
                values.append(int(word))
            except ValueError:
                raise ValueError(f"val_indices file {shown} line {number}: {word[:40]!r} is not an "
                                 f"integer; expected indices into the training set, 0 to {size - 1}") from None
    if not values:
        raise ValueError(f"val_indices file {shown} lists no index; expected the held-out images' "
                         f"positions in the training set, 0 to {size - 1}")
    idx = torch.tensor(values, dtype=torch.long)
    bad = idx[(idx < 0) | (idx >= size)]
    if len(bad):
        raise ValueError(f"val_indices file {shown}: index {int(bad[0])} is outside the training set "
                         f"of {size} images; expected 0 to {size - 1}")
    unique, counts = torch.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"val_indices file {shown}: index {int(unique[counts > 1][0])} is listed "
                         f"{int(counts.max())} times; expected each held-out image once")
    if len(idx) >= size:
        raise ValueError(f"val_indices file {shown} holds out all {size} training images; expected "
                         f"fewer, so that some are left to train on")
    return idx, hashlib.sha256(raw).hexdigest()


def split_data(dataset: Dataset, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
               train_subset: int | None = None, val_subset: int | None = None,
               reward_on_test: bool = False, val_indices: str | os.PathLike[str] | None = None) -> TrainingData:
    """Split ``dataset``'s training set into a training part and a class-balanced held-out part.

    ``val_fraction`` of every class is held out (seeded). ``train_subset`` / ``val_subset`` then keep a
    class-balanced subset of each part (CPU-scale proxies). With ``reward_on_test`` the reward uses the
    test set, as PaddleSlim's demo does — which overfits the search to the test set; a warning is printed.
    ``val_indices`` names a file of training-set positions (see :func:`read_index_file`) to hold out instead of
    ``val_fraction``: the images a parent you trained yourself never saw, so the rewards are honest. Its path
    and SHA-256 are recorded in the split.

    >>> split = split_data(load_dataset("synthetic", train_size=200, test_size=20), val_fraction=0.1)
    >>> len(split.train_indices), len(split.val_indices)
    (180, 20)
    """
    if val_indices is not None and reward_on_test:
        raise ValueError("val_indices with reward_on_test: the reward is then computed on the test set, so no "
                         "held-out images are used; give one of them")
    if val_indices is None and not 0.0 < val_fraction < 1.0 and not reward_on_test:
        raise ValueError(f"val_fraction is {val_fraction!r}, expected a fraction in (0, 1)")
    labels = dataset.train_labels.cpu()
    counts = torch.bincount(labels, minlength=dataset.num_classes).tolist()
    g = torch.Generator().manual_seed(seed)
    everything = torch.randperm(len(labels), generator=g)
    given = None
    if val_indices is not None:
        val_idx, digest = read_index_file(val_indices, len(labels))
        given = {"file": os.fspath(val_indices), "sha256": digest, "count": len(val_idx)}
        mask = torch.ones(len(labels), dtype=torch.bool)
        mask[val_idx] = False
        train_idx = everything[mask[everything]]
    elif reward_on_test:
        print("warning: reward_on_test reproduces PaddleSlim's protocol: the reward is computed on the TEST set, "
              "so the search selects for test accuracy and the final test number is optimistic", file=sys.stderr)
        train_idx, val_idx = everything, None
    else:
        # At least one image of every class with two or more, so tiny proxies still see each class held out.
        held = [min(max(round(val_fraction * n), 1), n - 1) if n > 1 else 0 for n in counts]
        val_idx = _balanced_take(labels, held, g)
        mask = torch.ones(len(labels), dtype=torch.bool)
        mask[val_idx] = False
        train_idx = everything[mask[everything]]

    def subset(idx: torch.Tensor, n: int | None, what: str) -> torch.Tensor:
        if n is None:
            return idx
        if not 0 < n <= len(idx):
            raise ValueError(f"{what} is {n}, expected an integer in [1, {len(idx)}]")
        local = _balanced_take(labels[idx], _spread(n, dataset.num_classes), g)
        return idx[local]

    train_idx = subset(train_idx, train_subset, "train_subset")
    if val_idx is not None:
        val_idx = subset(val_idx, val_subset, "val_subset")
    record = {"dataset": dataset.name, "source": dataset.source, "seed": seed,
              "val_fraction": None if given else val_fraction, "val_indices": given,
              "train_subset": train_subset, "val_subset": val_subset, "reward_on_test": reward_on_test,
              "train_size": len(train_idx), "val_size": len(val_idx) if val_idx is not None else
              len(dataset.test_labels)}
    return TrainingData(dataset, train_idx, val_idx, reward_on_test, record)


def prepare_data(name: str, root: str | Path | None = None, *, download: bool = False,
                 val_fraction: float = DEFAULT_VAL_FRACTION,
                 seed: int = 0, train_subset: int | None = None, val_subset: int | None = None,
                 reward_on_test: bool = False, val_indices: str | os.PathLike[str] | None = None,
                 device: torch.device | str = "cpu", **synthetic: Any) -> TrainingData:
    """Load a dataset, split it and move it to ``device`` in one call.

    >>> data = prepare_data("synthetic", train_size=100, test_size=20, train_subset=50)
    >>> data.split["train_size"], data.split["val_size"]
    (50, 10)
    """
    dataset = load_dataset(name, root, download, **synthetic)
    return split_data(dataset, val_fraction, seed, train_subset, val_subset, reward_on_test,
                      val_indices).to(device)
