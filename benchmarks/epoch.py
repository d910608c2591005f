"""End-to-end epoch time at a CPU proxy scale: the whole trainer, data on the device to metrics.

    .venv/bin/python benchmarks/epoch.py                 # 5-cell DartsSpace, 2,000 Fashion-MNIST images
    .venv/bin/python benchmarks/epoch.py --dataset synthetic --train 1000 --layers 8

Each configuration trains one epoch through :class:`sanas.training.Trainer` (seeded shuffle, device-side
augmentation, forward with aux head, backward, clip, SGD, cosine step) and evaluates the held-out split;
the table gives seconds and images/s for both, and what share of the epoch the augmentation took.
"""

from __future__ import annotations

import argparse
import time

import torch

from sanas import get_space
from sanas.training import Recipe, Trainer, prepare_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "synthetic", "cifar10"])
    parser.add_argument("--root", default=None)
    parser.add_argument("--train", type=int, default=2000, help="training images (class-balanced subset)")
    parser.add_argument("--val", type=int, default=1000, help="held-out images evaluated after the epoch")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--init-channels", type=int, default=8)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    extra = {"train_size": args.train + args.val, "channels": 3} if args.dataset == "synthetic" else {}
    data = prepare_data(args.dataset, args.root, train_subset=args.train, val_subset=args.val, **extra)
    space = get_space("DartsSpace", layers=args.layers, filter_num=[4, 8, 12, 16, 24, 32, 48, 64, 96, 128],
                      init_channels=args.init_channels, in_channels=data.in_channels)
    tokens = space.init_tokens()
    print(f"{args.dataset}: {args.train} train / {args.val} held-out images, DartsSpace layers={args.layers} "
          f"widths {space.widths(tokens)} ({space.count_params(tokens):,} params), batch {args.batch}, "
          f"{args.threads} threads")
    print(f"{'config':<16} {'train s':>8} {'train img/s':>12} {'val s':>7} {'val img/s':>10} {'augment':>8} "
          f"{'epoch s':>8}")
    for name, channels_last in (("contiguous", False), ("channels_last", True)):
        recipe = Recipe(retain_epoch=2, batch_size=args.batch, device="cpu", channels_last=channels_last)
        trainer = Trainer(space, tokens, data, recipe)
        # Time the augmentation alone over the same batches the epoch will see.
        images = trainer.train_images
        g = torch.Generator().manual_seed(1)
        start = time.perf_counter()
        for i in range(0, len(images), args.batch):
            trainer.augment(images[i:i + args.batch], g, channels_last=channels_last)
        augment_s = time.perf_counter() - start
        start = time.perf_counter()
        trainer.train_epoch()
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        trainer.evaluate(*trainer.data.val())
        val_s = time.perf_counter() - start
        print(f"{name:<16} {train_s:>8.2f} {args.train / train_s:>12.0f} {val_s:>7.2f} {args.val / val_s:>10.0f} "
              f"{100 * augment_s / train_s:>7.2f}% {train_s + val_s:>8.2f}")


if __name__ == "__main__":
    main()
