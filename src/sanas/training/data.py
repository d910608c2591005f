"""Datasets held in memory as uint8 tensors, and the train / held-out / test splits the trainer uses.

Built-in datasets are 32×32 (what the DARTS CIFAR network and its auxiliary head were made for); a user's data
keeps its own size, or takes ``input_size``:

* ``cifar10``: the ``cifar-10-batches-py`` pickle files (``data_batch_1..5``, ``test_batch``), read with a
  restricted unpickler that only admits what that format needs. ``download=True`` fetches the official
  archive and checks its MD5.
* ``fashion-mnist``: the IDX ``.gz`` files (default root: the Debian package ``dataset-fashion-mnist``).
  The 28×28 grey images are zero-padded to 32×32 and kept grey: the network is built with
  ``in_channels=1`` (replicating to three channels would only triple the stem's input work).
* ``synthetic``: deterministic, class-dependent images for fast tests; needs no files.
* ``folder``: an image folder in torchvision's ImageFolder layout, ``root/train/<class>/…`` and
  ``root/test/<class>/…``, or ``root/<class>/…`` with the test part held out (:data:`HELD_OUT_TEST_FRACTION` of
  each class, seeded). PNG, JPEG, BMP and WebP, decoded once with Pillow (:func:`fit_image` says how an image is
  brought to the input size and channels). Class names are the sorted folder names.
* ``npz``: a NumPy ``.npz`` file with ``x_train, y_train, x_test, y_test`` (uint8 images N×H×W×C, N×C×H×W or
  N×H×W for grey; integer labels) and optionally ``classes`` (their names).

:func:`dataset_from_torch` takes any map-style ``torch.utils.data.Dataset`` of ``(image, label)`` (or a
``DataLoader``) into the same in-memory :class:`Dataset`, for the Python API.

The input size, when not given, is the data's: every image must then have the same size. Images are only ever
shrunk, never enlarged (:func:`fit_image`). Mean and std are computed from the training images of a user's data.

The reward is computed on a held-out, class-balanced part of the *training* set (:func:`split_data`), never
on the test set, unless PaddleSlim's protocol is asked for explicitly.

Where the images live (``storage``, for ``folder`` and ``npz``): a dataset whose decoded images (uint8, at the input
size: ``N·C·H·W`` bytes) fit is held in memory and moved to the training device whole (``"memory"``: batches are
indexed there, no copy per step). A larger one is decoded once, in a process per core, into an image cache on disk
and streamed from it batch by batch (``"stream"``, :mod:`sanas.training.stream`): never held whole in memory,
never decoded again, while later runs and every process of a search reuse the cache. The rule (``"auto"``, the
default): stream when the decoded images exceed :data:`~sanas.training.stream.STREAM_FRACTION` (a quarter) of the
memory available when they are loaded; ``storage="memory"`` or ``"stream"`` forces a path. Both paths give the same
images, splits and batches, so the same rewards for the same seeds. The built-in datasets are always in memory.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import json
import multiprocessing
import os
import pickle
import shutil
import struct
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from sanas.training.stream import (
    STORAGES,
    StreamedImages,
    cache_key,
    check_storage,
    choose_storage,
    default_cache_dir,
    locked_build,
    write_images,
)

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
    "HELD_OUT_TEST_FRACTION",
    "IMAGE_SUFFIXES",
    "STORAGES",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "StreamedImages",
    "TrainingData",
    "check_input_size",
    "dataset_classes",
    "dataset_from_torch",
    "dataset_image_size",
    "dataset_shape",
    "default_root",
    "fit_image",
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
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
#: The channels of ``synthetic`` when ``channels`` is not given.
SYNTHETIC_CHANNELS = 3


class DatasetError(RuntimeError):
    """A dataset's files are missing, corrupt or cannot be fetched; the message names the path."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset in memory: uint8 ``N×C×H×W`` images and int64 labels in ``[0, num_classes)``.

    ``classes`` names the labels in order (a folder's sorted class folders; empty when unknown); ``source``
    says where the images came from.

    >>> data = load_dataset("synthetic", train_size=100, test_size=20)
    >>> data.train_images.shape, data.train_images.dtype, data.in_channels, data.image_size
    (torch.Size([100, 3, 32, 32]), torch.uint8, 3, (32, 32))
    """

    name: str
    train_images: torch.Tensor | StreamedImages
    train_labels: torch.Tensor
    test_images: torch.Tensor | StreamedImages
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10
    source: str = ""
    classes: tuple[str, ...] = ()

    @property
    def streamed(self) -> bool:
        """Whether the images are read from an image cache batch by batch (:mod:`sanas.training.stream`)."""
        return isinstance(self.train_images, StreamedImages)

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every tensor on ``device`` (one copy; uint8 stays uint8). Streamed images stay in
        their cache; their labels move."""
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
                   test_images, test_labels, CIFAR10_MEAN, CIFAR10_STD, source=str(folder), classes=CIFAR10_CLASSES)


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
    return Dataset("fashion-mnist", *train, *test, FASHION_MNIST_MEAN, FASHION_MNIST_STD, source=str(root),
                   classes=FASHION_MNIST_CLASSES)


# -------------------------------------------------------------------------------------------- synthetic

def _synthetic(train_size: int, test_size: int, channels: int, seed: int, num_classes: int = 10,
               size: tuple[int, int] = (32, 32)) -> Dataset:
    """Each class is a smooth random prototype; images are a prototype plus noise, shifted by a few pixels."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.nn.functional.interpolate(torch.rand(num_classes, channels, 4, 4, generator=g),
                                                 size=size, mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        x = 0.7 * prototypes[labels] + 0.3 * torch.rand(n, channels, *size, generator=g)
        shifts = torch.randint(-2, 3, (2,), generator=g).tolist()  # one shift per split: cheap, still varied
        x = torch.roll(x, shifts=shifts, dims=(2, 3))
        return (x * 255).round().clamp(0, 255).to(torch.uint8), labels

    train, test = make(train_size), make(test_size)
    scaled = train[0].float() / 255
    mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
    std = tuple(scaled.std(dim=(0, 2, 3)).tolist())
    return Dataset("synthetic", *train, *test, mean, std, num_classes, source=f"synthetic(seed={seed})",
                   classes=tuple(str(c) for c in range(num_classes)))


# ------------------------------------------------------------------------------------------ a user's images

#: The files an image folder is read from (by suffix, any case); any other file is skipped, and counted.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
# The only decoders Pillow may use: a file that is none of these formats is refused, whatever its suffix.
_PILLOW_FORMATS = ("BMP", "JPEG", "PNG", "WEBP")
_FORMATS_SAID = "PNG, JPEG, BMP or WebP"
#: Of each class of a folder without ``train/`` and ``test/`` (or of a torch dataset given no test part), this
#: fraction is the test set: seeded with 0, so the same files always make the same test set (at least one image
#: of each class with two or more).
HELD_OUT_TEST_FRACTION = 0.2
_HELD_OUT_SEED = 0
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def check_input_size(input_size: Sequence[int] | None) -> tuple[int, int] | None:
    """``(H, W)`` of an ``input_size`` setting (``None`` stays ``None``: the data's own size).

    >>> check_input_size([64, 48]), check_input_size(None)
    ((64, 48), None)
    >>> check_input_size((0, 0))
    Traceback (most recent call last):
    ValueError: input_size is (0, 0), expected two positive integers H W (e.g. 32 32)
    """
    if input_size is None:
        return None
    values = tuple(input_size) if isinstance(input_size, Sequence) and not isinstance(input_size, str) else ()
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in values):
        raise ValueError(f"input_size is {input_size!r}, expected two positive integers H W (e.g. 32 32)")
    return int(values[0]), int(values[1])


def _check_channels(channels: int | None) -> None:
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ValueError(f"channels is {channels!r}, expected 1 (grey) or 3 (RGB)")


def fit_image(image: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    """``image`` as a uint8 ``C×H×W`` array of ``size = (H, W)``: the one rule every user's image goes through.

    Channels: Pillow's ``convert`` to ``"L"`` (grey; colour by ITU-R 601-2 luma) or ``"RGB"`` (grey repeated);
    alpha is dropped; 16-bit grey is scaled to 8 bits. Size: scaled with its aspect ratio kept to the smallest size
    that covers ``H×W`` (bilinear, antialiased), then centre-cropped to ``H×W`` (Pillow's ``ImageOps.fit``); an
    image of ``H×W`` already is kept pixel for pixel. The loaders refuse an image smaller than ``H×W`` on either
    side before they get here: images are shrunk, never enlarged (enlarging invents detail the network would learn).

    >>> fit_image(Image.new("RGB", (40, 20), (255, 0, 0)), (10, 10), 1).shape  # Pillow sizes are W×H
    (1, 10, 10)
    """
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):  # convert("L") would clip 16-bit values at 255
        wide = np.asarray(image).astype(np.int64).clip(0, 65535)
        image = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
    h, w = size
    if image.size != (w, h):
        image = ImageOps.fit(image, (w, h), method=Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _open(path: Path) -> Image.Image:
    """Open (the header only) an image file with one of the admitted decoders."""
    try:
        return Image.open(path, formats=_PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise DatasetError(f"not an image: {path} cannot be read as {_FORMATS_SAID}; expected an image file (a "
                           f"file whose name does not end in {', '.join(IMAGE_SUFFIXES)} is skipped)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DatasetError(f"corrupt or truncated image {path}: {e}; expected a complete {_FORMATS_SAID} "
                           f"file") from e


def _peek(path: Path) -> tuple[tuple[int, int], str]:
    """``((H, W), mode)`` of an image file, from its header."""
    with _open(path) as image:
        return (image.height, image.width), image.mode


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    with _open(path) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as e:
            raise DatasetError(f"corrupt or truncated image {path}: {e}; expected a complete {_FORMATS_SAID} "
                               f"file") from e
        return fit_image(image, size, channels)


def _input_size(sizes: Sequence[tuple[int, int]], size: tuple[int, int] | None, where: str,
                name_of: Callable[[int], str]) -> tuple[int, int]:
    """The input size: ``size`` if given (every image at least that big), else the one size all images share."""
    if size is None:
        distinct = sorted(set(sizes))
        if len(distinct) > 1:
            raise DatasetError(f"the images of {where} have {len(distinct)} different sizes (e.g. "
                               f"{_hw(distinct[0])} and {_hw(distinct[-1])}, H×W); expected one size, or an "
                               f"input_size (--input-size H W) to bring them all to")
        return distinct[0]
    small = [i for i, (h, w) in enumerate(sizes) if h < size[0] or w < size[1]]
    if small:
        raise DatasetError(f"{len(small)} image(s) of {where} are smaller than the input size {_hw(size)}, e.g. "
                           f"{name_of(small[0])} ({_hw(sizes[small[0]])}); expected at least {_hw(size)}: images "
                           f"are shrunk to the input size, never enlarged (pass a smaller input_size, or remove them)")
    return size


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _hold_out_test(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) positions: :data:`HELD_OUT_TEST_FRACTION` of each class, seeded, is the test part."""
    counts = torch.bincount(labels).tolist()
    held = [min(max(round(HELD_OUT_TEST_FRACTION * n), 1), n - 1) if n > 1 else 0 for n in counts]
    test = _balanced_take(labels, held, torch.Generator().manual_seed(_HELD_OUT_SEED)).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[test] = False
    return torch.nonzero(keep).flatten(), test


class _ChannelSums:
    """Per-channel sums of uint8 images, chunk by chunk (exact integers), for their mean and std."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None
        self.count = 0

    def add(self, images: torch.Tensor) -> None:
        n, c, h, w = images.shape
        if self.total is None or self.squares is None:
            self.total, self.squares = torch.zeros(c, dtype=torch.int64), torch.zeros(c, dtype=torch.int64)
        for chunk in images.split(max(1, 2**22 // (c * h * w))):
            wide = chunk.to(torch.int64)
            self.total += wide.sum(dim=(0, 2, 3))
            self.squares += (wide * wide).sum(dim=(0, 2, 3))
        self.count += n * h * w

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and std scaled to [0, 1]; the std is at least 1/255, as a constant channel would otherwise be
        divided by 0."""
        assert self.total is not None and self.squares is not None
        mean = self.total.double() / self.count / 255
        var = (self.squares.double() / self.count / 255**2 - mean**2).clamp_min(0)
        return tuple(mean.tolist()), tuple(var.sqrt().clamp_min(1 / 255).tolist())


def _mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1] (:class:`_ChannelSums`)."""
    sums = _ChannelSums()
    sums.add(images)
    return sums.mean_std()


def _user_dataset(name: str, source: str, classes: Sequence[str] | None, train: tuple[Any, torch.Tensor],
                  test: tuple[Any, torch.Tensor], where: str,
                  mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Dataset:
    """A :class:`Dataset` of a user's images (tensors, or streamed with their ``mean_std`` given); checks the labels
    against ``classes`` (or numbers them)."""
    labels = torch.cat([train[1], test[1]])
    if len(labels) and int(labels.min()) < 0:
        raise DatasetError(f"{where}: label {int(labels.min())} is negative; expected class indices 0, 1, …")
    top = int(labels.max()) + 1 if len(labels) else 0
    if classes is None:
        classes = [str(c) for c in range(top)]
    classes = tuple(str(c) for c in classes)
    if top > len(classes):
        raise DatasetError(f"{where}: label {top - 1} has no class name; expected labels 0 to {len(classes) - 1}, "
                           f"one per name in classes {classes}")
    if len(classes) < 2:
        raise DatasetError(f"{where}: {len(classes)} class(es); expected at least two")
    if len(train[1]) == 0:
        raise DatasetError(f"{where}: no training images; expected at least one per class")
    mean, std = mean_std or _mean_std(train[0])
    return Dataset(name, train[0], train[1], test[0], test[1], mean, std, len(classes), source, classes)


def _conform(images: torch.Tensor, size: tuple[int, int] | None, channels: int | None, where: str) -> torch.Tensor:
    """uint8 ``N×C×H×W`` images brought to ``size`` and ``channels`` by :func:`fit_image` (kept when they are)."""
    n, c, h, w = images.shape
    size = size or (h, w)
    if h < size[0] or w < size[1]:
        raise DatasetError(f"the images of {where} are {_hw((h, w))}, smaller than the input size {_hw(size)}; "
                           f"expected at least {_hw(size)}: images are shrunk to the input size, never enlarged "
                           f"(pass a smaller input_size)")
    channels = c if channels is None else channels
    if (h, w) == size and c == channels:
        return images
    array = images.numpy()
    out = np.empty((n, channels, *size), dtype=np.uint8)
    for i in range(n):
        out[i] = fit_image(Image.fromarray(array[i, 0] if c == 1 else array[i].transpose(1, 2, 0)), size, channels)
    return torch.from_numpy(out)


# --- image folder

def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_files(root: Path) -> tuple[tuple[str, ...], list[Path], torch.Tensor, torch.Tensor | None, list[Path]]:
    """Classes, image files, their labels, which of them are the test part (``None``: ``train/`` and ``test/``
    say) and the skipped non-image files of an image folder; decodes nothing."""
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist: expected {root}/train/<class>/… and "
                           f"{root}/test/<class>/…, or {root}/<class>/…")
    parts = [root / "train", root / "test"]
    if any(p.is_dir() for p in parts):
        missing = [p for p in parts if not p.is_dir()]
        if missing:
            raise DatasetError(f"image folder {root} has no {missing[0].name}/ beside "
                               f"{({'train', 'test'} - {missing[0].name}).pop()}/: expected both "
                               f"train/<class>/… and test/<class>/…, or the class folders directly in {root}")
        classes, test_classes = _class_folders(parts[0]), _class_folders(parts[1])
        if classes != test_classes:
            only = [f"{where} alone has {', '.join(sorted(set(a) - set(b)))}"
                    for where, a, b in ((parts[0], classes, test_classes), (parts[1], test_classes, classes))
                    if set(a) - set(b)]
            raise DatasetError(f"class folders differ between {parts[0]} and {parts[1]}: {'; '.join(only)}; "
                               f"expected the same class folders in both")
    else:
        parts, classes = [root], _class_folders(root)
    if len(classes) < 2:
        raise DatasetError(f"image folder {parts[0]} has {len(classes)} class folder(s) "
                           f"({', '.join(classes) or 'none'}); expected at least two: <class>/<image>")
    files: list[Path] = []
    labels: list[int] = []
    skipped: list[Path] = []
    for part in parts:
        for label, name in enumerate(classes):
            found = 0
            for path in sorted((part / name).rglob("*")):
                if not path.is_file():
                    continue
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped.append(path)
                    continue
                files.append(path)
                labels.append(label)
                found += 1
            if not found:
                raise DatasetError(f"empty class folder {part / name}: no {', '.join(IMAGE_SUFFIXES)} file in it; "
                                   f"expected at least one image per class")
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    test = None
    if len(parts) == 2:
        test = torch.zeros(len(files), dtype=torch.bool)
        test[sum(1 for f in files if f.is_relative_to(parts[0])):] = True
    return tuple(classes), files, label_tensor, test, skipped


def _load_folder(root: Path, size: tuple[int, int] | None, channels: int | None, storage: str = "memory",
                 cache_dir: str | Path | None = None) -> Dataset:
    classes, files, labels, test, skipped = _folder_files(root)
    if test is None:
        train_idx, test_idx = _hold_out_test(labels)
        how = f"test: {HELD_OUT_TEST_FRACTION:.0%} of each class held out, seed {_HELD_OUT_SEED}"
    else:
        train_idx, test_idx = torch.nonzero(~test).flatten(), torch.nonzero(test).flatten()
        how = "train/ and test/"
    source = f"{root} ({how})"
    if skipped:
        note = (f"skipped {len(skipped)} file(s) that are not images (not {', '.join(IMAGE_SUFFIXES)}), e.g. "
                f"{skipped[0]}")
        print(f"note: {root}: {note}", file=sys.stderr)
        source = f"{root} ({how}; {note})"
    heads = None
    if storage != "memory":
        made_of = [[str(f.relative_to(root)), st.st_size, st.st_mtime_ns] for f, st in ((f, f.stat()) for f in files)]
        cache = Path(cache_dir or default_cache_dir()).expanduser() / cache_key("folder", made_of, size, channels)
        meta = _cache_meta(cache)
        if meta is None:
            heads = [head for part in _in_workers(_peek_chunk, _chunks(files)) for head in part]
            shape = _folder_shape(root, files, heads, size, channels)
        else:
            shape = tuple(meta["shape"])
        if choose_storage(storage, int(np.prod(shape))) == "stream":
            order = torch.cat([train_idx, test_idx]).tolist()
            decode = functools.partial(_decode_chunk, size=shape[2:], channels=shape[1])
            chunks = _in_workers(decode, _chunks([files[i] for i in order]))
            return _streamed_dataset("folder", source, classes, (labels[train_idx], labels[test_idx]), str(root),
                                     cache, shape, chunks)
    if heads is None:
        heads = [_peek(path) for path in files]
    _, channels, *size = _folder_shape(root, files, heads, size, channels)
    # Decoded one by one: threads (Pillow releases the GIL) measured no faster on the 2 busy cores this was written
    # on; worth measuring again where many cores are idle.
    images = np.empty((len(files), channels, *size), dtype=np.uint8)
    for i, path in enumerate(files):
        images[i] = _decode(path, (size[0], size[1]), channels)
    tensor = torch.from_numpy(images)
    return _user_dataset("folder", source, classes, (tensor[train_idx], labels[train_idx]),
                         (tensor[test_idx], labels[test_idx]), str(root))


def _folder_shape(root: Path, files: list[Path], heads: Sequence[tuple[tuple[int, int], str]],
                  size: tuple[int, int] | None, channels: int | None) -> tuple[int, int, int, int]:
    """``(N, C, H, W)`` of a folder's decoded images, from their headers and the settings."""
    size = _input_size([hw for hw, _ in heads], size, str(root), lambda i: str(files[i]))
    if channels is None:
        channels = 1 if {mode for _, mode in heads} <= _GREY_MODES else 3
    return len(files), channels, *size


# --- an image cache (sanas.training.stream): decoded once, in worker processes

#: Images per task of the worker processes that build an image cache.
_CHUNK = 256


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _in_workers(fn: Callable[[Any], Any], tasks: list[Any]) -> Iterator[Any]:
    """``fn`` of each task, in order: in a process per core when there are several tasks and cores, else here.

    ``fork``ed workers: they decode with Pillow only, and unlike ``spawn`` or ``forkserver`` they do not import
    the caller's main script again (a script calling prepare_data at its top level would otherwise run again in
    each). A daemonic process (an isolated candidate) cannot have children: it decodes here."""
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                  len(tasks))
    if workers < 2 or multiprocessing.current_process().daemon or \
            "fork" not in multiprocessing.get_all_start_methods():
        yield from map(fn, tasks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(fn, tasks)


def _peek_chunk(paths: Sequence[Path]) -> list[tuple[tuple[int, int], str]]:
    return [_peek(path) for path in paths]


def _decode_chunk(paths: Sequence[Path], size: tuple[int, int], channels: int) -> np.ndarray:
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = _decode(path, size, channels)
    return out


def _cache_meta(cache: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of a complete image cache, or ``None``."""
    try:
        return json.loads((cache / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _streamed_dataset(name: str, source: str, classes: Sequence[str] | None,
                      labels: tuple[torch.Tensor, torch.Tensor], where: str, cache: Path,
                      shape: Sequence[int], chunks: Iterable[np.ndarray]) -> Dataset:
    """A :class:`Dataset` streamed from the image cache ``cache``, built from ``chunks`` (the training part's
    images first, then the test part's) unless it exists; the mean and std are summed as the chunks are written."""
    n_train = len(labels[0])
    with locked_build(cache) as tmp:
        if tmp is not None:
            print(f"note: decoding {shape[0]} images of {where} once into the image cache {cache}", file=sys.stderr)
            sums = _ChannelSums()

            def counted() -> Iterator[np.ndarray]:
                done = 0
                for chunk in chunks:
                    if done < n_train:
                        sums.add(torch.from_numpy(chunk[:n_train - done]))
                    done += len(chunk)
                    yield chunk

            write_images(tmp / "images.npy", shape, counted())
            mean, std = sums.mean_std() if n_train else ((), ())
            (tmp / "meta.json").write_text(json.dumps({"shape": list(shape), "train": n_train, "mean": mean,
                                                       "std": std, "source": where}))
    meta = _cache_meta(cache)
    assert meta is not None
    images = StreamedImages(cache / "images.npy")
    if meta["train"] != n_train or tuple(images.shape) != tuple(shape):
        raise DatasetError(f"image cache {cache} holds {tuple(images.shape)} images, {meta['train']} for training; "
                           f"expected {tuple(shape)}, {n_train}: delete it to rebuild it")
    return _user_dataset(name, source, classes, (images[:n_train], labels[0]), (images[n_train:], labels[1]), where,
                         (tuple(meta["mean"]), tuple(meta["std"])))


# --- arrays (.npz)

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(x: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """uint8 N×H×W×C, N×C×H×W (C = 1 or 3: channels-last when only the last axis can be C) or N×H×W → N×C×H×W."""
    expected = "expected uint8 images N×H×W×C or N×C×H×W with C = 1 or 3, or N×H×W for grey"
    if x.dtype != np.uint8:
        raise DatasetError(f"{path}: {key} is {x.dtype}, {expected} (from floats in [0, 1]: "
                           f"(x * 255).round().astype(np.uint8))")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[3] in (1, 3):
        tail = " (axes 1 and 3 could both be the channels)" if x.ndim == 4 and x.shape[1] in (1, 3) else ""
        raise DatasetError(f"{path}: {key} has shape {tuple(x.shape)}{tail}; {expected}")
    if len(x) == 0:
        raise DatasetError(f"{path}: {key} holds no image; {expected}")
    return torch.from_numpy(np.ascontiguousarray(x))


def _npz_labels(y: np.ndarray, count: int, key: str, images_key: str, path: Path) -> torch.Tensor:
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' N×1 labels
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key} is {y.dtype} of shape {tuple(y.shape)}; expected {count} integer class "
                           f"labels")
    if len(y) != count:
        raise DatasetError(f"{path}: {images_key} holds {count} images but {key} {len(y)} labels; expected one "
                           f"label per image")
    return torch.from_numpy(y.astype(np.int64))


def _read_npz(path: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor],
                                   tuple[str, ...] | None]:
    """((train images, labels), (test images, labels), class names or None) of an .npz file, as stored."""
    expected = f"expected a NumPy .npz file (np.savez) with {', '.join(_NPZ_KEYS)} (and optionally classes)"
    if not path.is_file():
        raise DatasetError(f"missing .npz file {path}: {expected}")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DatasetError(f"{path} holds a single array; {expected}")
        with npz:
            missing = [k for k in _NPZ_KEYS if k not in npz.files]
            if missing:
                raise DatasetError(f"{path} lacks {', '.join(missing)} (it holds {', '.join(npz.files) or 'nothing'}"
                                   f"); {expected}")
            arrays = {k: npz[k] for k in (*_NPZ_KEYS, "classes") if k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"corrupt .npz file {path}: {e}; {expected}") from e
    parts = []
    for split in ("train", "test"):
        images = _npz_images(arrays[f"x_{split}"], f"x_{split}", path)
        parts.append((images, _npz_labels(arrays[f"y_{split}"], len(images), f"y_{split}", f"x_{split}", path)))
    return parts[0], parts[1], _npz_classes(arrays.get("classes"), path)


def _npz_classes(names: np.ndarray | None, path: Path) -> tuple[str, ...] | None:
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise DatasetError(f"{path}: classes is {names.dtype} of shape {tuple(names.shape)}; expected one name "
                           f"(a string) per class")
    return None if names is None else tuple(str(n.decode() if isinstance(n, bytes) else n) for n in names)


def _load_npz(path: Path, size: tuple[int, int] | None, channels: int | None, storage: str = "memory",
              cache_dir: str | Path | None = None) -> Dataset:
    cache = None
    if storage != "memory" and path.is_file():
        st = path.stat()
        made_of = [str(path.resolve()), st.st_size, st.st_mtime_ns]
        cache = Path(cache_dir or default_cache_dir()).expanduser() / cache_key("npz", made_of, size, channels)
        meta = _cache_meta(cache)
        if meta is not None and choose_storage(storage, int(np.prod(meta["shape"]))) == "stream":
            # Only the labels are read: the images are in the cache.
            try:
                with np.load(path, allow_pickle=False) as npz:
                    counts = meta["train"], meta["shape"][0] - meta["train"]
                    labels = tuple(_npz_labels(npz[f"y_{split}"], n, f"y_{split}", f"x_{split}", path)
                                   for split, n in zip(("train", "test"), counts, strict=True))
                    classes = _npz_classes(npz["classes"] if "classes" in npz.files else None, path)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                raise DatasetError(f"corrupt .npz file {path}: {e}") from e
            return _streamed_dataset("npz", str(path), classes, (labels[0], labels[1]), str(path), cache,
                                     meta["shape"], [])
    train, test, classes = _read_npz(path)
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DatasetError(f"{path}: x_train images are {'×'.join(map(str, train[0].shape[1:]))} (C×H×W) but "
                           f"x_test's {'×'.join(map(str, test[0].shape[1:]))}; expected one shape")
    size = size or (int(train[0].shape[2]), int(train[0].shape[3]))
    train = (_conform(train[0], size, channels, f"{path} x_train"), train[1])
    test = (_conform(test[0], size, channels, f"{path} x_test"), test[1])
    shape = (len(train[0]) + len(test[0]), *train[0].shape[1:])
    if cache is not None and choose_storage(storage, int(np.prod(shape))) == "stream":
        # NumPy reads an .npz member whole: the file is held in memory once, while its cache is written.
        chunks = [c.numpy() for part in (train[0], test[0]) for c in part.split(_CHUNK)]
        return _streamed_dataset("npz", str(path), classes, (train[1], test[1]), str(path), cache, shape, chunks)
    return _user_dataset("npz", str(path), classes, train, test, str(path))


# --- a torch dataset (the Python API)

def _torch_image(image: Any, where: str) -> Image.Image | np.ndarray:
    """A PIL image as it is, or a tensor / array as a uint8 ``C×H×W`` array."""
    if isinstance(image, Image.Image):
        return image
    expected = "expected a C×H×W tensor (C = 1 or 3; float in [0, 1] or uint8) or a PIL image"
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise DatasetError(f"{where}: the image is {type(image).__name__}; {expected}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DatasetError(f"{where}: the image has shape {tuple(image.shape)}; {expected}")
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind != "f":
        raise DatasetError(f"{where}: the image is {image.dtype}; {expected}")
    lo, hi = float(image.min()), float(image.max())
    if not (lo >= 0.0 and hi <= 1.0):  # also refuses NaN
        raise DatasetError(f"{where}: a float image with values in [{lo:.3g}, {hi:.3g}]; {expected} (normalise "
                           f"afterwards: sanas applies the mean and std itself)")
    return (image * 255).round().astype(np.uint8)


def _torch_label(label: Any, where: str) -> int:
    if isinstance(label, torch.Tensor | np.ndarray) and label.ndim == 0:
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise DatasetError(f"{where}: the label is {label!r}; expected an integer class index")
    return int(label)


def _torch_items(data: Any, what: str) -> tuple[list[Image.Image | np.ndarray], list[int]]:
    """The ``(image, label)`` pairs of a map-style dataset (by index) or a DataLoader (batch by batch)."""
    if isinstance(data, torch.utils.data.DataLoader):
        pairs: Iterable[Any] = (pair for batch in data for pair in zip(*batch, strict=True))
    else:
        try:
            count = len(data)
        except TypeError:
            raise DatasetError(f"the {what} data is {type(data).__name__}, without len(); expected a map-style "
                               f"torch.utils.data.Dataset of (image, label), or a DataLoader") from None
        pairs = (data[i] for i in range(count))
    images, labels = [], []
    for k, pair in enumerate(pairs):
        where = f"{what} item {k}"
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise DatasetError(f"{where} is {type(pair).__name__}; expected an (image, label) pair")
        images.append(_torch_image(pair[0], where))
        labels.append(_torch_label(pair[1], where))
    if not images:
        raise DatasetError(f"the {what} data holds no item; expected (image, label) pairs")
    return images, labels


def _fit_items(items: Sequence[Image.Image | np.ndarray], size: tuple[int, int], channels: int) -> torch.Tensor:
    out = np.empty((len(items), channels, *size), dtype=np.uint8)
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray) and item.shape == out.shape[1:]:
            out[i] = item
            continue
        if isinstance(item, np.ndarray):
            item = Image.fromarray(item[0] if len(item) == 1 else item.transpose(1, 2, 0))
        out[i] = fit_image(item, size, channels)
    return torch.from_numpy(out)


def dataset_from_torch(train: Any, test: Any = None, *, classes: Sequence[str] | None = None,
                       input_size: Sequence[int] | None = None, channels: int | None = None,
                       name: str = "torch") -> Dataset:
    """A map-style ``torch.utils.data.Dataset`` of ``(image, label)`` (or a ``DataLoader`` of such batches) read
    once into an in-memory :class:`Dataset`, with the checks of the ``folder`` and ``npz`` datasets.

    An image is a ``C×H×W`` tensor (C = 1 or 3; float in [0, 1] or uint8) or a PIL image; a label an integer.
    ``test=None`` holds out :data:`HELD_OUT_TEST_FRACTION` of each class of ``train``. ``classes`` defaults to
    ``train.classes`` (torchvision's datasets have it) or the label numbers. ``input_size`` ``(H, W)`` defaults to
    the images' one size; ``channels`` to 1 when every image is grey, else 3. Images reach that size and those
    channels by :func:`fit_image`. Normalise nothing yourself: the mean and std come from the training images.

    >>> pairs = [(torch.full((1, 8, 6), c / 2), c) for c in (0, 1, 2)] * 4
    >>> data = dataset_from_torch(pairs, pairs[:3], classes=["a", "b", "c"])
    >>> data.train_images.shape, data.classes, data.train_images[1, 0, 0, 0].item()
    (torch.Size([12, 1, 8, 6]), ('a', 'b', 'c'), 128)
    """
    size = check_input_size(input_size)
    _check_channels(channels)
    items, labels = _torch_items(train, "train")
    test_items, test_labels = ([], []) if test is None else _torch_items(test, "test")
    every = items + test_items
    sizes = [(i.height, i.width) if isinstance(i, Image.Image) else (i.shape[1], i.shape[2]) for i in every]
    where = f"the {type(train).__name__}"
    size = _input_size(sizes, size, where, lambda i: f"train item {i}" if i < len(items) else
                       f"test item {i - len(items)}")
    if test is None:
        train_idx, test_idx = _hold_out_test(torch.tensor(labels, dtype=torch.int64))
        test_items, test_labels = [items[i] for i in test_idx], [labels[i] for i in test_idx]
        items, labels = [items[i] for i in train_idx], [labels[i] for i in train_idx]
        how = f"test: {HELD_OUT_TEST_FRACTION:.0%} of each class held out, seed {_HELD_OUT_SEED}"
    else:
        how = "train and test given"
    if channels is None:
        grey = all(i.mode in _GREY_MODES if isinstance(i, Image.Image) else len(i) == 1 for i in every)
        channels = 1 if grey else 3
    if classes is None:
        named = getattr(train.dataset if isinstance(train, torch.utils.data.DataLoader) else train, "classes", None)
        if isinstance(named, Sequence) and not isinstance(named, str) and all(isinstance(n, str) for n in named):
            classes = named
    return _user_dataset(name, f"{type(train).__name__} ({how})", classes,
                         (_fit_items(items, size, channels), torch.tensor(labels, dtype=torch.int64)),
                         (_fit_items(test_items, size, channels), torch.tensor(test_labels, dtype=torch.int64)),
                         where)


@dataclass(frozen=True)
class DatasetSpec:
    """What is known of a registered dataset before it is loaded (the CLI's choices, the config's space shape)."""

    in_channels: int | None  # None: the ``channels`` setting, else the data's (synthetic: 3)
    num_classes: int | None  # None: the data's (read from ``root`` by dataset_shape)
    description: str


#: The datasets :func:`load_dataset` knows — the one registry behind ``prepare_data(name)``, the config's
#: ``[data] dataset`` and ``--dataset``. To add one: an entry here and a branch in :func:`load_dataset`.
DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(3, 10, "CIFAR-10, the cifar-10-batches-py pickles (--download fetches them)"),
    "fashion-mnist": DatasetSpec(1, 10, "Fashion-MNIST from Debian's dataset-fashion-mnist, padded to 32×32"),
    "synthetic": DatasetSpec(None, 10, "random class prototypes plus noise, for tests and smoke runs"),
    "folder": DatasetSpec(None, None, "your images: --data-root DIR with train/<class>/… and test/<class>/…, "
                                      "or <class>/… (PNG, JPEG, BMP, WebP)"),
    "npz": DatasetSpec(None, None, "your arrays: --data-root FILE.npz with x_train, y_train, x_test, y_test (uint8)"),
}
#: The dataset of a search that names none.
DEFAULT_DATASET = "fashion-mnist"
#: The held-out fraction of each class that rewards are computed on.
DEFAULT_VAL_FRACTION = 0.1


def dataset_shape(name: str, channels: int | None = None, root: str | Path | None = None) -> tuple[int, int]:
    """``(in_channels, num_classes)`` of registered dataset ``name``, without decoding its images.

    ``folder`` and ``npz`` read them from ``root``: the class folders and the image headers (the channels, unless
    ``channels`` is given), or the .npz's labels and array shapes.

    >>> dataset_shape("fashion-mnist"), dataset_shape("synthetic", channels=1)
    ((1, 10), (1, 10))
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if name in ("folder", "npz"):
        _check_channels(channels)
    if name == "folder":
        classes, files, _, _, _ = _folder_files(_user_root(name, root))
        if channels is None:
            grey = {mode for _, mode in (_peek(path) for path in files)} <= _GREY_MODES
            channels = 1 if grey else 3
        return channels, len(classes)
    if name == "npz":
        train, test, classes = _read_npz(_user_root(name, root))
        labels = torch.cat([train[1], test[1]])
        return channels or train[0].shape[1], len(classes) if classes is not None else int(labels.max()) + 1
    assert spec.num_classes is not None
    if spec.in_channels is None:
        return SYNTHETIC_CHANNELS if channels is None else channels, spec.num_classes
    return spec.in_channels, spec.num_classes


def dataset_classes(name: str, root: str | Path | None = None) -> tuple[str, ...]:
    """The class names of a user's dataset (``folder``: its class folders, sorted; ``npz``: its ``classes`` array,
    else the label numbers), without decoding images; ``()`` for the built-in datasets, whose classes are fixed.
    A run records them, so that a resumed search is refused on a folder whose classes changed."""
    if name == "folder":
        return _folder_files(_user_root(name, root))[0]
    if name == "npz":
        train, test, classes = _read_npz(_user_root(name, root))
        labels = torch.cat([train[1], test[1]])
        return classes if classes is not None else tuple(str(c) for c in range(int(labels.max()) + 1))
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS)}")
    return ()


def dataset_image_size(name: str, root: str | Path | None = None,
                       input_size: Sequence[int] | None = None) -> tuple[int, int]:
    """``(H, W)`` of the images training sees, without decoding them: ``input_size`` when given, else the data's
    own size (a folder's image headers, an .npz's array shapes; 32×32 for the built-in datasets).

    >>> dataset_image_size("fashion-mnist"), dataset_image_size("synthetic", input_size=[64, 48])
    ((32, 32), (64, 48))
    """
    size = check_input_size(input_size)
    if size is not None:
        return size
    if name == "folder":
        folder = _user_root(name, root)
        _, files, _, _, _ = _folder_files(folder)
        return _input_size([_peek(path)[0] for path in files], None, str(folder), lambda i: str(files[i]))
    if name == "npz":
        train, _, _ = _read_npz(_user_root(name, root))
        return int(train[0].shape[2]), int(train[0].shape[3])
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS)}")
    return 32, 32


def _user_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        what = "a folder of class folders" if name == "folder" else "an .npz file"
        raise ValueError(f"the {name} dataset needs root: {what} (--data-root)")
    return Path(root).expanduser()


def default_root(name: str) -> Path:
    """Where ``name`` is looked for when no root is given (``$SANAS_DATA`` overrides the CIFAR-10 one)."""
    if name == "fashion-mnist":
        return FASHION_MNIST_ROOT
    return Path(os.environ.get("SANAS_DATA", "~/.cache/sanas")).expanduser() / name


def load_dataset(name: str, root: str | Path | None = None, download: bool = False, *,
                 train_size: int = 2000, test_size: int = 500, channels: int | None = None, seed: int = 0,
                 input_size: Sequence[int] | None = None, storage: str = "auto",
                 cache_dir: str | Path | None = None) -> Dataset:
    """Load a registered dataset (:data:`DATASETS`) into memory (CPU, uint8).

    ``root`` defaults to :func:`default_root`; ``folder`` (an image folder) and ``npz`` (a file) need one.
    ``download`` only applies to CIFAR-10. ``train_size``, ``test_size`` and ``seed`` only apply to ``synthetic``.
    ``channels`` applies to ``synthetic`` (default 3), ``folder`` and ``npz`` (1 or 3; default: the data's, a
    folder being grey when every image is). ``input_size`` ``(H, W)`` defaults to the data's size (32×32 for the
    built-in datasets); images are brought to it by :func:`fit_image`, never enlarged (``synthetic`` is drawn at it).
    ``storage`` (``folder`` and ``npz``): ``"memory"``, ``"stream"`` (an image cache in ``cache_dir``, default
    :func:`~sanas.training.stream.default_cache_dir`) or ``"auto"``, the rule of the module docstring.

    >>> load_dataset("synthetic", train_size=50, test_size=10, channels=1).test_images.shape
    torch.Size([10, 1, 32, 32])
    >>> load_dataset("synthetic", train_size=50, test_size=10, input_size=(48, 64)).test_images.shape
    torch.Size([10, 3, 48, 64])
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {', '.join(DATASETS)}")
    size = check_input_size(input_size)
    if check_storage(storage) == "stream" and name not in ("folder", "npz"):
        raise ValueError(f"storage 'stream' applies to the folder and npz datasets, not {name} (held in memory)")
    if name == "synthetic":
        return _synthetic(train_size, test_size, SYNTHETIC_CHANNELS if channels is None else channels, seed,
                          size=size or (32, 32))
    _check_channels(channels)
    if name == "folder":
        return _load_folder(_user_root(name, root), size, channels, storage, cache_dir)
    if name == "npz":
        return _load_npz(_user_root(name, root), size, channels, storage, cache_dir)
    path = Path(root).expanduser() if root is not None else default_root(name)
    dataset = _load_cifar10(path, download) if name == "cifar10" else _load_fashion_mnist(path)
    if size is None or size == dataset.image_size:
        return dataset
    return replace(dataset, train_images=_conform(dataset.train_images, size, None, f"{name} (training)"),
                   test_images=_conform(dataset.test_images, size, None, f"{name} (test)"))


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
        return self.dataset.train_labels.device

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
                 device: torch.device | str = "cpu", input_size: Sequence[int] | None = None,
                 **loader: Any) -> TrainingData:
    """Load a dataset (:func:`load_dataset`; ``loader`` holds its other settings), split it and move it to
    ``device`` in one call.

    >>> data = prepare_data("synthetic", train_size=100, test_size=20, train_subset=50)
    >>> data.split["train_size"], data.split["val_size"]
    (50, 10)
    """
    dataset = load_dataset(name, root, download, input_size=input_size, **loader)
    return split_data(dataset, val_fraction, seed, train_subset, val_subset, reward_on_test,
                      val_indices).to(device)
