"""A user's own model and data, end to end, as the README's "Compress your own model" runs them; prints a table.

What it does, every step as a user would, with the installed ``sanas`` command in a work folder:

1. writes a folder of 64×64 RGB PNG images made from Fashion-MNIST (``train/<class>/``, ``test/<class>/``);
2. writes ``user_model.py``: a small ResNet of the user's own (no sanas code in it), ``untrained()`` and
   ``trained()`` (the latter loads the parent's weights from ``parent/model.safetensors`` with safetensors);
3. trains the parent at 64×64 from scratch: ``sanas train --model user_model.py:untrained --dataset folder ...``;
4. searches at 0.5× its parameters: ``sanas search --model user_model.py:trained --dataset folder
   --evaluation inherit`` (the demo's 30 candidates, then the product's finalists);
5. fine-tunes the chosen child and the uniform-width child at the same budget, half the parent's epochs each
   (``sanas train --run-dir ...`` and ``... --uniform``), as ``make demo`` does;
6. reloads the chosen child's ``model.pt2`` in a fresh process without sanas, and checks its outputs.

Wall time of each step and test top-1 of the parent, the chosen and the uniform child; the table also goes to
``benchmarks/data/user_path.md``.

    .venv/bin/python benchmarks/user_path.py                    # ~3,000 images, 8-epoch parent (tens of minutes)
    .venv/bin/python benchmarks/user_path.py --train-images 600 --parent-epochs 2 --search-steps 4   # a smoke run
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")

USER_MODEL = textwrap.dedent('''
    """A user's own model: nothing of sanas in it."""
    from pathlib import Path

    import torch
    from safetensors.torch import load_file
    from torch import nn


    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
            self.c2, self.b2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
            self.down = None if stride == 1 and c_in == c_out else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.down is None else self.down(x)))


    class SmallResNet(nn.Module):
        def __init__(self, widths=(16, 32, 64), classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU())
            blocks, c = [], widths[0]
            for i, w in enumerate(widths):
                blocks += [Block(c, w, 1 if i == 0 else 2), Block(w, w, 1)]
                c = w
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(c, classes)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


    def untrained():
        torch.manual_seed(0)
        return SmallResNet()


    def trained():
        net = SmallResNet()
        net.load_state_dict(load_file(Path(__file__).with_name("parent") / "model.safetensors"))
        return net
''')

RELOAD = textwrap.dedent('''
    import sys, torch
    program = torch.export.load(sys.argv[1]).module()
    x = torch.load(sys.argv[2], weights_only=True)
    same = torch.allclose(program(x), torch.load(sys.argv[3], weights_only=True), atol=1e-4)
    print("same outputs" if same and "sanas" not in sys.modules else "DIFFERENT")
''')


def idx(name: str, offset: int) -> np.ndarray:
    with gzip.open(FASHION / name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def write_images(root: Path, train: int, test: int, size: int) -> None:
    from PIL import Image

    for split, prefix, count in (("train", "train", train), ("test", "t10k", test)):
        images = idx(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:count]
        labels = idx(f"{prefix}-labels-idx1-ubyte.gz", 8)[:count]
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize((size, size), Image.BILINEAR).convert("RGB").save(folder / f"{i:05d}.png")


def step(table: list[tuple[str, float]], name: str, argv: list[str], cwd: Path) -> str:
    print(f"$ {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    table.append((name, time.perf_counter() - start))
    if done.returncode != 0:
        sys.exit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/sanas-user-path"))
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--parent-epochs", type=int, default=8)
    parser.add_argument("--search-steps", type=int, default=30, help="30: make demo's")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "user_path.md")
    args = parser.parse_args()
    sanas = shutil.which("sanas", path=str(Path(sys.executable).parent)) or "sanas"
    work = args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    table: list[tuple[str, float]] = []
    start = time.perf_counter()
    write_images(work / "images", args.train_images, args.test_images, args.size)
    table.append((f"write {args.train_images + args.test_images} PNG images ({args.size}×{args.size})",
                  time.perf_counter() - start))
    (work / "user_model.py").write_text(USER_MODEL)
    data = ["--dataset", "folder", "--data-root", "images"]
    init = subprocess.run([sys.executable, "-c", "from sanas import get_space; print(*get_space('ModelSpace', "
                           f"model='user_model.py:untrained', example_input=[3, {args.size}, {args.size}])"
                           ".init_tokens())"], cwd=work, capture_output=True, text=True, check=True).stdout.split()
    step(table, f"train the parent ({args.parent_epochs} epochs)",
         [sanas, "train", "--model", "user_model.py:untrained", *data, "--token", *init,
          "--retain-epoch", str(args.parent_epochs), "--out", "parent", "--no-onnx", "--progress", "none"], work)
    finetune = str(max(1, args.parent_epochs // 2))
    step(table, f"search at 0.5× ({args.search_steps} candidates + finalists)",
         [sanas, "search", "--model", "user_model.py:trained", *data, "--max-params", "0.5x", "--evaluation",
          "inherit", "--search-steps", str(args.search_steps), "--run-dir", "run", "--progress", "none"], work)
    for name, extra in (("chosen", []), ("uniform", ["--uniform"])):
        step(table, f"fine-tune the {name} child ({finetune} epochs)",
             [sanas, "train", "--run-dir", "run", "--retain-epoch", finetune, "--progress", "none", *extra], work)
    import torch

    chosen = work / "run" / "final"
    from sanas.training import load_model

    net = load_model(chosen)
    x = torch.randn(4, 3, args.size, args.size)
    torch.save(x, work / "x.pt")
    with torch.no_grad():
        torch.save(net(x), work / "y.pt")
    (work / "reload.py").write_text(RELOAD)
    said = step(table, "reload model.pt2 in a fresh process",
                [sys.executable, "reload.py", str(chosen / "model.pt2"), "x.pt", "y.pt"], work).strip()
    infos = {name: json.loads((work / folder / "model.json").read_text())
             for name, folder in (("parent", "parent"), ("chosen", "run/final"), ("uniform", "run/uniform"))}
    lines = [f"# The user's path at {args.size}×{args.size} (`benchmarks/user_path.py`)", "",
             f"{args.train_images} training and {args.test_images} test images of Fashion-MNIST as {args.size}×"
             f"{args.size} RGB PNG files; a small ResNet of the user's own; machine: {os.cpu_count()} CPUs, "
             f"torch {torch.__version__}; reload check: {said}.", "",
             "| step | wall s |", "|---|---:|", *(f"| {name} | {seconds:.0f} |" for name, seconds in table),
             f"| **total** | {sum(s for _, s in table):.0f} |", "",
             "| model | params | test top-1 % |", "|---|---:|---:|",
             *(f"| {name} | {info['params']:,} | {100 * info['test']['top1']:.2f} |" for name, info in infos.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
