"""One CIFAR-shaped epoch (50,000 synthetic 32×32 images) of the full DARTS model on CUDA.

    .venv/bin/python benchmarks/gpu_epoch.py                  # bf16 + channels_last, compile off and on
    .venv/bin/python benchmarks/gpu_epoch.py --no-compile --images 20000

Runs the real trainer (device-side data, augmentation, aux head, drop path, clip, SGD, per-batch cosine)
at the demo recipe (batch 96) and prints, per configuration, the first epoch (which pays for cuDNN
autotuning and, with compile, compilation) and the second, steady epoch. Goal on an H100: ≤ 15 s per
50,000-image epoch. Exits with a message when there is no CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from sanas import get_space
from sanas.training import Recipe, Trainer, load_dataset, split_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile configuration")
    parser.add_argument("--fp32", action="store_true", help="also time float32 (no autocast)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_epoch.py needs a CUDA device and none is available (torch.cuda.is_available() is False); "
                 "for a CPU proxy run benchmarks/epoch.py")
    torch.backends.cudnn.benchmark = True
    dataset = load_dataset("synthetic", train_size=args.images + 1000, test_size=100, channels=3)
    # 1,000 held out so the timed epoch is exactly --images training images.
    data = split_data(dataset, val_fraction=1000 / (args.images + 1000)).to("cuda")
    space = get_space("DartsSpace")
    tokens = space.init_tokens()
    configs = [("bf16, channels_last", True, True, False)]
    if args.fp32:
        configs.append(("fp32, channels_last", False, True, False))
    if not args.no_compile:
        configs.append(("bf16, channels_last, compile", True, True, True))
    print(f"{torch.cuda.get_device_name()}: full DARTS ({space.count_params(tokens):,} params), "
          f"{len(data.train_indices):,} images/epoch, batch {args.batch}")
    print(f"{'config':<32} {'epoch 1 s':>10} {'epoch 2 s':>10} {'img/s':>8} {'peak GiB':>9}")
    for name, bf16, channels_last, compile_ in configs:
        torch.cuda.reset_peak_memory_stats()
        recipe = Recipe(retain_epoch=2, batch_size=args.batch, device="cuda", bf16=bf16,
                        channels_last=channels_last, compile=compile_)
        trainer = Trainer(space, tokens, data, recipe)
        seconds = []
        for _ in range(2):
            torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_epoch()
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
            trainer.epoch += 1  # drop path grows as in a real run
        peak = torch.cuda.max_memory_allocated() / 2**30
        n = len(trainer.train_labels)
        print(f"{name:<32} {seconds[0]:>10.1f} {seconds[1]:>10.1f} {n / seconds[1]:>8.0f} {peak:>9.1f}")
        del trainer
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
