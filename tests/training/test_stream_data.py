"""Streamed data (``storage="stream"``): an image cache decoded once, read batch by batch, and the same training as
the in-memory path."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sanas import get_space
from sanas.training import DatasetError, Recipe, Trainer, load_dataset, prepare_data
from sanas.training.stream import STREAM_FRACTION, StreamedImages, choose_storage


def _folder(root: Path, per_class: int = 12, size: tuple[int, int] = (20, 16), classes: int = 3) -> None:
    """``per_class`` random RGB PNGs per class in ``root/<class>/`` (the test part is held out by sanas)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            pixels[:, :, c] //= 4  # a little class signal
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i:03d}.png")


def _caches(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_the_cache_is_built_once_reused_and_rebuilt_when_a_file_changes(tmp_path: Path) -> None:
    _folder(tmp_path / "images")
    cache = tmp_path / "cache"
    first = load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=cache, input_size=(16, 16))
    assert first.streamed and isinstance(first.train_images, StreamedImages)
    (built,) = _caches(cache)
    stamp = (built / "images.npy").stat().st_mtime_ns
    again = load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=cache, input_size=(16, 16))
    assert _caches(cache) == [built] and (built / "images.npy").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert torch.equal(again.train_images.read(), first.train_images.read())
    # Another input size is another cache; so is a changed file.
    load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=cache, input_size=(8, 8))
    assert len(_caches(cache)) == 2
    Image.new("RGB", (16, 20), (255, 255, 255)).save(tmp_path / "images" / "c0" / "000.png")
    changed = load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=cache, input_size=(16, 16))
    assert len(_caches(cache)) == 3
    everything = [torch.cat([d.train_images.read(), d.test_images.read()]) for d in (first, changed)]
    assert not torch.equal(*everything)
    assert not list(cache.glob(".*.tmp"))  # no temporary left behind


def test_streamed_images_are_bit_identical_to_the_in_memory_ones(tmp_path: Path) -> None:
    _folder(tmp_path / "images")
    memory = load_dataset("folder", tmp_path / "images", storage="memory", input_size=(12, 14))
    stream = load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=tmp_path / "cache",
                          input_size=(12, 14))
    assert stream.train_images.shape == memory.train_images.shape
    assert stream.test_images.shape == memory.test_images.shape
    assert torch.equal(stream.train_images.read(), memory.train_images)
    assert torch.equal(stream.test_images.read(), memory.test_images)
    assert torch.equal(stream.train_labels, memory.train_labels) and torch.equal(stream.test_labels, memory.test_labels)
    assert (stream.mean, stream.std, stream.classes, stream.source) == (memory.mean, memory.std, memory.classes,
                                                                        memory.source)
    # Views index like tensors and read only what they name, batch by batch, in the order asked.
    idx = torch.tensor([5, 0, 1, 2, 17])
    assert torch.equal(stream.train_images[idx].read(), memory.train_images[idx])
    assert torch.equal(stream.train_images[3:9:2].read(), memory.train_images[3:9:2])
    got = list(stream.train_images.batches([idx, torch.tensor([4]), idx.flip(0)], "cpu"))
    assert [torch.equal(g, memory.train_images[i]) for g, i in zip(got, [idx, torch.tensor([4]), idx.flip(0)],
                                                                   strict=True)] == [True] * 3


def test_npz_streams_from_its_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 10, 10, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    memory = load_dataset("npz", tmp_path / "d.npz", storage="memory")
    for _ in range(2):  # built, then read from the cache (labels only from the .npz)
        stream = load_dataset("npz", tmp_path / "d.npz", storage="stream", cache_dir=tmp_path / "cache")
        assert torch.equal(stream.train_images.read(), memory.train_images)
        assert torch.equal(stream.test_images.read(), memory.test_images)
        assert torch.equal(stream.test_labels, memory.test_labels) and stream.mean == memory.mean


@pytest.mark.parametrize("augment", [False, True])
def test_training_on_streamed_data_matches_the_in_memory_path(tmp_path: Path, augment: bool) -> None:
    # The same shuffle, the same batches, the same augmentation draws: the same rewards and test numbers.
    _folder(tmp_path / "images", per_class=14)
    space = get_space("PlainCNNSpace", in_channels=3, num_classes=3)
    recipe = Recipe(retain_epoch=2, batch_size=8, eval_batch_size=7, device="cpu", augment=augment, seed=3)
    results = []
    for storage in ("memory", "stream"):
        data = prepare_data("folder", tmp_path / "images", storage=storage, cache_dir=tmp_path / "cache",
                            input_size=(16, 16), seed=1)
        assert data.dataset.streamed == (storage == "stream")
        t = Trainer(space, space.init_tokens(), data, recipe)
        t.reestimate_bn(3)
        metrics = [t.run_epoch() for _ in range(2)]
        results.append(([(m.train_loss, m.val_loss, m.val_top1) for m in metrics], t.reward(),
                         t.evaluate(*t.data.test())))
    assert results[0] == results[1]


def test_a_streamed_split_pickles_as_paths_and_indices(tmp_path: Path) -> None:
    _folder(tmp_path / "images", per_class=30)
    data = prepare_data("folder", tmp_path / "images", storage="stream", cache_dir=tmp_path / "cache")
    blob = pickle.dumps(data)
    assert len(blob) < data.dataset.train_images.nbytes / 4  # the pixels stay in the cache
    back = pickle.loads(blob)
    assert torch.equal(back.val()[0].read(), data.val()[0].read())


def test_forced_and_automatic_storage(tmp_path: Path) -> None:
    _folder(tmp_path / "images")
    assert not load_dataset("folder", tmp_path / "images", storage="memory").streamed
    assert not load_dataset("folder", tmp_path / "images").streamed  # auto: a few KiB fit
    assert load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=tmp_path / "c").streamed
    assert choose_storage("auto", 100, available=int(100 / STREAM_FRACTION) - 1) == "stream"
    assert choose_storage("auto", 100, available=int(100 / STREAM_FRACTION)) == "memory"
    assert choose_storage("stream", 1, available=10**12) == "stream"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "folder", "storage": "disk"}, "storage is 'disk', expected 'auto', 'memory' or 'stream'"),
    ({"name": "synthetic", "storage": "stream"}, "storage 'stream' applies to the folder and npz datasets, not "
                                                 "synthetic (held in memory)"),
])
def test_bad_storage_settings_are_one_line_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    _folder(tmp_path / "images", per_class=2)
    with pytest.raises(ValueError) as info:
        load_dataset(root=tmp_path / "images", **kwargs)
    assert str(info.value) == message and "\n" not in message


def test_a_corrupt_image_fails_the_build_and_leaves_no_cache(tmp_path: Path) -> None:
    _folder(tmp_path / "images", per_class=3)
    # A header that reads, pixels that do not: found while the cache is written, which is then dropped.
    good = (tmp_path / "images" / "c1" / "000.png").read_bytes()
    (tmp_path / "images" / "c1" / "bad.png").write_bytes(good[:len(good) // 2])
    with pytest.raises(DatasetError, match=r"bad\.png"):
        load_dataset("folder", tmp_path / "images", storage="stream", cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


RSS_PROBE = textwrap.dedent("""
    import json, sys
    import torch
    from sanas.training.data import load_dataset
    ds = load_dataset("npz", sys.argv[1], storage=sys.argv[2], cache_dir=sys.argv[3])
    if ds.streamed:  # one epoch of shuffled batches, as the trainer reads them
        order = torch.randperm(len(ds.train_labels))
        for batch in ds.train_images.batches(order.split(256), "cpu"):
            pass
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(json.dumps({"hwm": int(status["VmHWM"].split()[0]) * 1024}))
""")


@pytest.mark.slow
def test_resident_memory_does_not_grow_with_a_streamed_dataset(tmp_path: Path) -> None:
    # Two datasets 10× apart (6 MiB and 60 MiB of pixels), each read for an epoch in a fresh process after its cache
    # is built: the peak resident memory (VmHWM; ru_maxrss would carry this parent's over fork and exec) differs by
    # far less than the data. glibc's sliding mmap threshold adds a plateau of up to ~20 MiB of freed batch buffers
    # kept in its arenas, reached after a few dozen batches whatever the data: fixed here, to see sanas' own growth.
    peaks = []
    for n in (2_000, 20_000):
        rng = np.random.default_rng(n)
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        np.savez(tmp_path / f"{n}.npz", x_train=x[:-100], y_train=np.arange(n - 100) % 10, x_test=x[-100:],
                 y_test=np.arange(100) % 10)
        del x
        cache = tmp_path / "cache"
        load_dataset("npz", tmp_path / f"{n}.npz", storage="stream", cache_dir=cache)  # build it here
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tmp_path / f"{n}.npz"), "stream", str(cache)],
                             capture_output=True, text=True, check=True, env=env)
        peaks.append(json.loads(out.stdout)["hwm"])
    data_growth = 18_000 * 3 * 32 * 32
    assert peaks[1] - peaks[0] < data_growth / 10, (peaks, data_growth)
