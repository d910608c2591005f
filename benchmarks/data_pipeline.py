"""The data pipeline on both paths (``storage="memory"`` and ``"stream"``) on the same images, side by side.

    .venv/bin/python benchmarks/data_pipeline.py                 # ~5 minutes on a 2-core machine
    .venv/bin/python benchmarks/data_pipeline.py --images 3000 --images-224 300 --epochs 4 --rss-sizes 2000,20000

Makes its own image folders in a temporary directory: Fashion-MNIST training images (the Debian package's IDX
files) upscaled to 64×64 and to 224×224 RGB PNG, ten class folders. Prints

* images/s of each stage at 64×64 and 224×224: decoding the folder (the in-memory path: one by one in this process;
  the streaming path: into its image cache, a worker process per core), and drawing an epoch's shuffled batches
  and augmenting them (pad-crop, flip, normalise, Cutout) as the trainer does (indexed in memory, or read from the
  cache by the reading threads);
* the epoch time of a training (PlainCNNSpace at 64×64, batch 128, augmentation on) on each path, the median of the
  epochs after the first, and the two paths' rewards (they must be equal: the same batches);
* the peak resident memory (VmHWM) of a fresh process that loads a dataset and reads one epoch of batches, at two
  sizes 10× apart (random 64×64 images in an .npz, its cache built beforehand).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sanas import get_space
from sanas.training import Augment, Recipe, Trainer, load_dataset, prepare_data
from sanas.training.data import FASHION_MNIST_ROOT

RSS_PROBE = """
import sys, torch
from sanas.training.augment import Augment
from sanas.training.data import load_dataset
ds = load_dataset("npz", sys.argv[1], storage=sys.argv[2], cache_dir=sys.argv[3])
aug, g = Augment.for_size(ds.mean, ds.std, ds.image_size), torch.Generator().manual_seed(0)
order = torch.randperm(len(ds.train_labels)).split(128)
batches = ds.train_images.batches(order, "cpu") if ds.streamed else (ds.train_images[i] for i in order)
for images in batches:
    aug(images, g)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]) * 1024)
"""


def fashion_folder(root: Path, count: int, side: int) -> None:
    """``count`` Fashion-MNIST training images, upscaled (bicubic) to ``side``×``side`` RGB PNG, by class."""
    raw = gzip.decompress((FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:count]
    labels = np.frombuffer(gzip.decompress((FASHION_MNIST_ROOT / "train-labels-idx1-ubyte.gz").read_bytes()),
                           np.uint8, offset=8)[:count]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(folder / f"{i}.png")


def decode_rate(root: Path, storage: str, cache: Path) -> float:
    """Images/s of loading the folder from scratch (the cache emptied first)."""
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    ds = load_dataset("folder", root, storage=storage, cache_dir=cache)
    return (len(ds.train_labels) + len(ds.test_labels)) / (time.perf_counter() - start)


def batch_rate(ds: Any, batch: int, augment: bool = True, epochs: int = 3) -> float:
    """Images/s of drawing shuffled batches (and augmenting them), median over ``epochs`` epochs."""
    aug, g = Augment.for_size(ds.mean, ds.std, ds.image_size), torch.Generator().manual_seed(0)
    rates = []
    for _ in range(epochs):
        order = torch.randperm(len(ds.train_labels), generator=g).split(batch)
        start = time.perf_counter()
        batches = ds.train_images.batches(order, "cpu") if ds.streamed else (ds.train_images[i] for i in order)
        for images in batches:
            if augment:
                aug(images, g)
        rates.append(len(ds.train_labels) / (time.perf_counter() - start))
    return statistics.median(rates)


def epoch_times(root: Path, cache: Path, epochs: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of each training epoch on both paths, and the held-out top-1 after; the two trainings alternate epoch
    by epoch (in turn first), so that other jobs on the machine slow both alike."""
    space = get_space("PlainCNNSpace", in_channels=3, num_classes=10)
    recipe = Recipe(retain_epoch=epochs, batch_size=128, device="cpu", seed=0)
    trainers = {s: Trainer(space, space.init_tokens(), prepare_data("folder", root, storage=s, cache_dir=cache),
                           recipe) for s in ("memory", "stream")}
    seconds: dict[str, list[float]] = {s: [] for s in trainers}
    for epoch in range(epochs):
        for storage in ("memory", "stream") if epoch % 2 == 0 else ("stream", "memory"):
            trainer = trainers[storage]
            start = time.perf_counter()
            trainer.train_epoch()
            seconds[storage].append(time.perf_counter() - start)
            trainer.epoch += 1
    return seconds, {s: t.evaluate(*t.data.val())[1] for s, t in trainers.items()}


def peak_rss(path: Path, storage: str, cache: Path) -> int:
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path), storage, str(cache)], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="64×64 images (default 3000)")
    parser.add_argument("--images-224", type=int, default=300, help="224×224 images (default 300)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per path (default 5)")
    parser.add_argument("--rss-sizes", default="2000,20000", help="two dataset sizes for the peak RSS")
    args = parser.parse_args()
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} CPUs, load average {load:.1f} at the start (a shared machine: other jobs may run), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="sanas-pipeline-") as tmp:
        work = Path(tmp)
        rows = []
        for side, count in ((64, args.images), (224, args.images_224)):
            root, cache = work / f"images{side}", work / f"cache{side}"
            fashion_folder(root, count, side)
            decode = {s: decode_rate(root, s, cache) for s in ("memory", "stream")}
            batch = {s: batch_rate(load_dataset("folder", root, storage=s, cache_dir=cache), 128)
                     for s in ("memory", "stream")}
            batch["read"] = batch_rate(load_dataset("folder", root, storage="stream", cache_dir=cache), 128, False)
            rows.append((f"{side}×{side}", count, decode, batch))
        print("\n## Throughput (images/s; batches of 128, augmented on the CPU)\n")
        print("| size | images | decode, memory (1 process) | decode into the cache (a process per core) | "
              "batch + augment, memory | batch + augment, stream | batch alone, stream |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for size, count, decode, batch in rows:
            print(f"| {size} | {count} | {decode['memory']:,.0f} | {decode['stream']:,.0f} | {batch['memory']:,.0f} "
                  f"| {batch['stream']:,.0f} | {batch['read']:,.0f} |")

        root, cache = work / "images64", work / "cache64"
        times, rewards = epoch_times(root, cache, args.epochs)
        median = {s: statistics.median(t[1:]) for s, t in times.items()}
        print(f"\n## Epoch time at 64×64 (PlainCNNSpace, batch 128, augmentation on, {args.images} images)\n")
        print("| path | every epoch (s) | median after the first (s) | held-out top-1 after |")
        print("|---|---|---:|---:|")
        for s in ("memory", "stream"):
            print(f"| {s} | {', '.join(f'{t:.2f}' for t in times[s])} | {median[s]:.2f} | {rewards[s]:.4f} |")
        ratio = median["stream"] / median["memory"]
        print(f"\nstream / memory: {ratio:.3f} (target ≤ 1.25); same reward on both paths: "
              f"{rewards['stream'] == rewards['memory']}")

        sizes = [int(n) for n in args.rss_sizes.split(",")]
        rss: dict[int, dict[str, int]] = {}
        for n in sizes:
            x = np.random.default_rng(n).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)
            path = work / f"random{n}.npz"
            np.savez(path, x_train=x[:-100], y_train=np.arange(n - 100) % 10, x_test=x[-100:],
                     y_test=np.arange(100) % 10)
            del x
            load_dataset("npz", path, storage="stream", cache_dir=work / "cache-npz")  # built here, not measured
            rss[n] = {s: peak_rss(path, s, work / "cache-npz") for s in ("memory", "stream")}
        print("\n## Peak resident memory (VmHWM) loading a dataset and reading an epoch, random 64×64 images\n")
        print("| images | pixels | memory path | stream path |")
        print("|---:|---:|---:|---:|")
        for n in sizes:
            print(f"| {n:,} | {n * 3 * 64 * 64 / 2**20:,.0f} MiB | {rss[n]['memory'] / 2**20:,.0f} MiB | "
                  f"{rss[n]['stream'] / 2**20:,.0f} MiB |")
        print("\n" + json.dumps({"throughput": [{"size": r[0], "images": r[1], "decode": r[2], "batch": r[3]}
                                                for r in rows], "epoch_seconds": times, "ratio": ratio,
                                 "peak_rss": rss, "load_average": load}))


if __name__ == "__main__":
    main()
