"""Small data sets in the official ``cifar-10-batches-py`` layout, for tests of the CIFAR-10 reader and the CLI.

On the path of every test (``pythonpath`` in pyproject.toml): ``from _cifar_files import write_cifar10``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sanas.atomic import atomic_write_bytes


def pickle_cifar_batch(images: np.ndarray, labels: Sequence[int], batch_label: str) -> bytes:
    """Bytes of one batch as the official files hold it: a protocol-2 pickle of a dict with bytes keys."""
    blob = {b"batch_label": batch_label.encode(), b"labels": [int(x) for x in labels],
            b"data": images.reshape(len(images), 3072).astype(np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    buf = io.BytesIO()
    pickle.dump(blob, buf, protocol=2)
    return buf.getvalue()


def write_cifar10(root: str | Path, train: tuple[np.ndarray, Sequence[int]],
                  test: tuple[np.ndarray, Sequence[int]]) -> Path:
    """Write images (``N×3×32×32`` uint8) in the ``cifar-10-batches-py`` layout under ``root``.

    The training images are spread over ``data_batch_1..5``. Returns the batches folder.
    """
    folder = Path(root) / "cifar-10-batches-py"
    images, labels = train
    chunks = np.array_split(np.arange(len(images)), 5)
    for i, idx in enumerate(chunks, start=1):
        atomic_write_bytes(folder / f"data_batch_{i}", pickle_cifar_batch(
            images[idx], [labels[j] for j in idx], f"training batch {i} of 5"))
    atomic_write_bytes(folder / "test_batch", pickle_cifar_batch(test[0], test[1], "testing batch 1 of 1"))
    return folder
