"""The tiny inherit-search config the CLI tests share: a synthetic dataset and a CPU recipe at test size, with the
space, the recipe's extra keys and the search table given by each test."""

from __future__ import annotations

#: A three-layer plain CNN space (its widths from 4 to 16).
PLAIN_SPACE = """[space]
name = "PlainCNNSpace"
layers = 3
filter_num = [4, 8, 12, 16]
stem_channels = 8
"""


def inherit_toml(search: str, space: str = PLAIN_SPACE, retain_epoch: float = 0.5, bn_batches: int = 3,
                 recipe: str = "") -> str:
    """A TOML config: ``space``, 160 synthetic training images (40 test), an inherit recipe with ``retain_epoch``,
    ``bn_batches`` and the ``recipe`` lines, and ``search`` as the [search] table's lines."""
    return f"""{space}
[data]
dataset = "synthetic"
channels = 1
train_size = 160
test_size = 40

[recipe]
evaluation = "inherit"
retain_epoch = {retain_epoch}
batch_size = 16
cutout = 0
device = "cpu"
bn_batches = {bn_batches}
{recipe}
[search]
{search}"""
