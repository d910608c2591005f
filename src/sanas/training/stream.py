"""Images streamed from an image cache on disk: decoded once, read batch by batch, never held whole in memory.

A dataset too large for memory (``storage="stream"``, or ``"auto"`` by :func:`choose_storage`'s rule) is decoded
once, at the training size, into an **image cache**: a folder holding ``images.npy`` (uint8 ``N×C×H×W``, the
training part's rows first, then the test part's) and ``meta.json``. Its name is a digest of what the images were
made from (:func:`cache_key`: the files, their sizes and modification times, the input size and channels), so a
later run, and every process of a search, finds it again, and a changed file makes a new one. It is written into
a temporary folder and renamed into place; a lock lets one process build it while the others wait.

:class:`StreamedImages` stands where the in-memory path has a uint8 tensor: it has a ``shape``, indexing gives
another view (rows, no I/O), and :meth:`StreamedImages.batches` reads whole batches in background threads with
``pread`` into fresh (pinned, on CUDA) buffers, a few batches ahead of the training loop, which copies them to the
device and augments them there as usual. ``pread`` rather than ``mmap``: pages of a memory map count in the
process's resident memory (``RssFile``) as they are touched, so it would grow with the dataset; copies out of the
page cache do not. Threads rather than DataLoader worker processes: a candidate may train in a daemonic process,
which cannot have children, and reading raw bytes needs no decoding (``pread`` releases the GIL). A view pickles as
its file's path and its row numbers, never its pixels.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> chunks = [np.full((2, 1, 4, 4), k, dtype=np.uint8) for k in range(3)]
>>> images = write_images(folder / "images.npy", (6, 1, 4, 4), chunks)
>>> images.shape, images[1::2].read()[:, 0, 0, 0].tolist()
(torch.Size([6, 1, 4, 4]), [0, 1, 2])
>>> [b[:, 0, 0, 0].tolist() for b in images.batches([torch.tensor([5, 0]), torch.tensor([2])], "cpu")]
[[2, 0], [1]]
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["CACHE_VERSION", "STORAGES", "STREAM_FRACTION", "StreamedImages", "available_memory", "cache_key",
           "check_storage", "choose_storage", "default_cache_dir", "locked_build", "write_images"]

Storage = Literal["auto", "memory", "stream"]
#: The ``storage`` settings: ``memory`` (every image a tensor on the training device), ``stream`` (an image cache
#: on disk, read batch by batch), ``auto`` (:func:`choose_storage`).
STORAGES: tuple[str, ...] = ("auto", "memory", "stream")
#: ``auto`` streams a dataset whose decoded images exceed this fraction of the memory available now: the in-memory
#: path briefly holds two copies while it splits them, and every process of a search on this machine its own.
STREAM_FRACTION = 0.25
#: Bumped when the cache's layout or the decoding rule changes: older caches are then simply not found.
CACHE_VERSION = 1
#: Batches read ahead of the one being trained on, and the threads reading them.
PREFETCH = 6
READ_THREADS = 2


def check_storage(storage: str) -> Storage:
    """``storage`` if it is one of :data:`STORAGES`; a one-line ``ValueError`` otherwise.

    >>> check_storage("stream")
    'stream'
    >>> check_storage("disk")
    Traceback (most recent call last):
    ValueError: storage is 'disk', expected 'auto', 'memory' or 'stream'
    """
    if storage not in STORAGES:
        raise ValueError(f"storage is {storage!r}, expected 'auto', 'memory' or 'stream'")
    return storage  # type: ignore[return-value]


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (Linux' ``MemAvailable``; else the free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_storage(storage: str, nbytes: int, available: int | None = None) -> Literal["memory", "stream"]:
    """The path for ``nbytes`` of decoded images: ``storage`` when it is forced, else (``auto``) ``stream`` when
    they exceed :data:`STREAM_FRACTION` of ``available`` memory (default: :func:`available_memory`).

    >>> choose_storage("auto", 3 * 2**30, available=16 * 2**30), choose_storage("auto", 5 * 2**30, 16 * 2**30)
    ('memory', 'stream')
    >>> choose_storage("memory", 5 * 2**30, 16 * 2**30)
    'memory'
    """
    if check_storage(storage) != "auto":
        return storage  # type: ignore[return-value]
    limit = STREAM_FRACTION * (available_memory() if available is None else available)
    return "stream" if nbytes > limit else "memory"


def default_cache_dir() -> Path:
    """Where image caches go unless ``cache_dir`` says: ``$SANAS_CACHE``, else ``~/.cache/sanas/images``."""
    return Path(os.environ.get("SANAS_CACHE", "~/.cache/sanas/images")).expanduser()


def cache_key(*parts: Any) -> str:
    """A short digest of ``parts`` (JSON-serialisable), with :data:`CACHE_VERSION`: the name of an image cache.

    >>> cache_key("folder", [["a.png", 10, 0]], None, 3) == cache_key("folder", [["a.png", 10, 0]], None, 3)
    True
    """
    blob = json.dumps([CACHE_VERSION, *parts], separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@contextlib.contextmanager
def locked_build(folder: Path) -> Iterator[Path | None]:
    """Hold ``folder``'s build lock; yields ``None`` when ``folder`` is complete (built before, or by another
    process while this one waited), else an empty temporary folder to build in, renamed to ``folder`` on success."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the process dies
        if (folder / "meta.json").is_file():
            yield None
            return
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        try:
            yield tmp
            if folder.exists():  # a broken leftover (no meta.json): replace it
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def write_images(path: Path, shape: Sequence[int], chunks: Iterable[np.ndarray]) -> StreamedImages:
    """Write uint8 ``chunks`` (each ``n×C×H×W``, in order) as the ``.npy`` file ``path`` of ``shape``, without
    holding more than one chunk (no memory map: its written pages would count in this process's memory)."""
    shape = tuple(int(s) for s in shape)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        written = 0
        for chunk in chunks:
            if chunk.dtype != np.uint8 or chunk.shape[1:] != shape[1:]:
                raise ValueError(f"chunk of {chunk.dtype} {chunk.shape}, expected uint8 n×{shape[1:]}")
            f.write(np.ascontiguousarray(chunk).data)
            written += len(chunk)
        if written != shape[0]:
            raise ValueError(f"{written} images written to {path}, expected {shape[0]}")
        f.flush()
        os.fsync(f.fileno())
    return StreamedImages(path)


class StreamedImages:
    """uint8 ``N×C×H×W`` images in a ``.npy`` file, seen through a list of rows; stands where the in-memory path
    has a tensor. Indexing (an int, a slice, an index tensor or array) gives another view and reads nothing;
    :meth:`read` and :meth:`batches` read. ``to(device)`` returns the same view: the images stay on disk and
    :meth:`batches` delivers them to the device."""

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, path: Path, rows: np.ndarray | range | None = None) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                                     np.lib.format.read_array_header_2_0(f))
            self._offset = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"{self.path} holds {dtype} {shape}, expected C-ordered uint8 N×C×H×W images")
        self._count, self._image = int(shape[0]), tuple(int(s) for s in shape[1:])
        self._row_bytes = int(np.prod(self._image))
        self.rows: np.ndarray | range = range(self._count) if rows is None else rows

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["rows"])  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self._image))

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self._row_bytes

    def _rows(self) -> np.ndarray:
        r = self.rows
        return np.arange(r.start, r.stop, r.step, dtype=np.int64) if isinstance(r, range) else r

    def __getitem__(self, key: Any) -> StreamedImages:
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        if isinstance(key, int | np.integer):
            key = slice(key, key + 1 if key != -1 else None)
        view = StreamedImages.__new__(StreamedImages)
        view.__dict__.update(self.__dict__)
        view.rows = self.rows[key] if isinstance(key, slice) else self._rows()[np.asarray(key)]
        return view

    def to(self, device: torch.device | str) -> StreamedImages:
        return self

    def read(self, positions: Sequence[int] | np.ndarray | torch.Tensor | None = None,
             pin: bool = False) -> torch.Tensor:
        """The images at ``positions`` of this view (all when ``None``) as a uint8 CPU tensor, read now."""
        if isinstance(positions, torch.Tensor):
            positions = positions.cpu().numpy()
        rows = self._rows() if positions is None else self._rows()[np.asarray(positions)]
        # No torch call on the reading threads unless pinning: a torch op from a second thread can start a second
        # team of OpenMP threads that competes with the training's.
        out = (torch.empty((len(rows), *self._image), dtype=torch.uint8, pin_memory=True).numpy() if pin else
               np.empty((len(rows), *self._image), dtype=np.uint8))
        buf = out.reshape(len(rows), self._row_bytes)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            start = 0
            while start < len(rows):  # runs of consecutive rows in one pread each
                end = start + 1
                while end < len(rows) and rows[end] == rows[end - 1] + 1:
                    end += 1
                want = (end - start) * self._row_bytes
                got = os.preadv(fd, [buf[start:end]], self._offset + int(rows[start]) * self._row_bytes)
                if got != want:
                    raise OSError(f"{self.path} ended early: read {got} of {want} bytes at row {rows[start]}")
                start = end
        finally:
            os.close(fd)
        return torch.from_numpy(out)

    def batches(self, positions: Iterable[np.ndarray | torch.Tensor], device: torch.device | str,
                ) -> Iterator[torch.Tensor]:
        """The images at each of ``positions`` (one index array per batch), in order, on ``device``: read
        :data:`PREFETCH` batches ahead by :data:`READ_THREADS` threads, into pinned memory when ``device`` is a GPU
        (copied without blocking). Stopping early (``close()``, or dropping the iterator) cancels what is queued."""
        device = torch.device(device)
        pin = device.type == "cuda"
        todo = iter(positions)
        pending: deque[Future[torch.Tensor]] = deque()
        pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sanas-stream")
        try:
            for p in todo:
                pending.append(pool.submit(self.read, p, pin))
                if len(pending) > PREFETCH:
                    break
            while pending:
                batch = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self.read, nxt, pin))
                yield batch.to(device, non_blocking=True)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
