"""Throughput of the device-side augmentation, and its cost relative to a full-DARTS training step.

    .venv/bin/python benchmarks/augment.py                     # measures a short full-DARTS step (batch 96)
    .venv/bin/python benchmarks/augment.py --step-seconds 5.2  # or take the step time from elsewhere

Prints augmented images/s (pad 4 + random crop, flip, normalise, Cutout 16; CIFAR-shaped uint8 batches) on
CPU, and on CUDA when available, and the share of a training step the augmentation of one batch costs
(goal: < 2 %). The CPU step is sanas' DartsNetwork, init tokens, channels_last, aux head, SGD with clip.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from sanas import get_space
from sanas.training import Augment
from sanas.training.data import CIFAR10_MEAN, CIFAR10_STD


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def augment_seconds(device: torch.device, batch: int, repeats: int) -> float:
    """Median seconds to augment one uint8 batch of ``batch`` CIFAR images on ``device``."""
    images = torch.randint(0, 256, (50 * batch, 3, 32, 32), dtype=torch.uint8, device=device)
    g = torch.Generator(device).manual_seed(0)
    aug = Augment(CIFAR10_MEAN, CIFAR10_STD)
    order = torch.randperm(len(images), generator=g, device=device)
    times = []
    for i in range(repeats + 3):
        idx = order[(i % 50) * batch:(i % 50 + 1) * batch]
        _sync(device)
        start = time.perf_counter()
        aug(images[idx], g, channels_last=True)
        _sync(device)
        if i >= 3:  # the first calls pay for allocations and kernel selection
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_seconds(device: torch.device, batch: int, steps: int) -> float:
    """Median seconds of one full-DARTS training step (what the augmentation is compared with)."""
    torch.manual_seed(0)
    space = get_space("DartsSpace")
    net = space.token2arch(space.init_tokens()).to(device, memory_format=torch.channels_last).train()
    net.set_drop_path_prob(0.1)
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for i in range(steps + 1):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, aux = net(x)
            loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=50, help="timed augmentation calls per device")
    parser.add_argument("--step-seconds", type=float, default=None,
                        help="CPU full-DARTS step time to compare with, instead of measuring it")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps when measuring (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        aug = augment_seconds(device, args.batch, args.repeats)
        if device.type == "cpu" and args.step_seconds is not None:
            step, source = args.step_seconds, "given"
        else:
            step, source = step_seconds(device, args.batch, args.steps), "measured"
        rows.append((device.type, args.batch / aug, 1e3 * aug, step, source, 100 * aug / step))

    print(f"augmentation (pad 4 + crop, flip, normalise, Cutout 16), batch {args.batch}, "
          f"{args.threads} CPU threads")
    print(f"{'device':<7} {'images/s':>10} {'ms/batch':>9} {'DARTS step s':>13} {'':>9} {'share of step':>14}")
    for dev, rate, ms, step, source, share in rows:
        verdict = "ok" if share < 2 else "over the 2 % goal"
        print(f"{dev:<7} {rate:>10,.0f} {ms:>9.2f} {step:>13.3f} {source:>9} {share:>13.3f}%  {verdict}")


if __name__ == "__main__":
    main()
