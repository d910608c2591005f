"""The tracer on common architectures (tests/spaces/_architectures.py): which groups it searches, exact counts at
32, 64 and 224, and children that compute exactly what the parent computes on the channels they keep.

The last is the strongest check of a layout: zero every weight of the channels a child drops in the parent (the
"masked parent"), inherit the child from it (the dropped channels then score zero and are the ones dropped), and
the child's output must equal the masked parent's. A wrong coupling (a shuffle mapped to the wrong positions, two
groups cut apart that the forward ties) changes it.
"""

from __future__ import annotations

import functools
import random

import pytest
import torch
import torch.nn.functional as F
from _architectures import ARCHITECTURES, channel_shuffle
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from _weights import randomise
from sanas.spaces.channels import trace_channels
from sanas.spaces.channels.rules import RULES, binary, unary
from sanas.spaces.model import ModelSpace

SIZES = (32, 64, 224)
#: Searchable groups of each architecture; the classifier is the only frozen group of every one.
SEARCHABLE = {"ResNet": 6, "PreActResNet": 6, "WideResNet": 6, "DenseNet": 10, "SE-ResNet": 10, "MobileNetV2": 8,
              "MobileNetV3": 13, "EfficientNet": 11, "ShuffleNetV2": 9, "GhostNet": 12}


@functools.cache
def space_of(name: str) -> ModelSpace:
    torch.manual_seed(0)
    return ModelSpace(randomise(ARCHITECTURES[name]()), example_input=[3, 32, 32])


def token_vectors(space: ModelSpace) -> list[list[int]]:
    rng = random.Random(0)
    return [space.init_tokens(), [0] * len(space.range_table()), [rng.randrange(n) for n in space.range_table()]]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_group_but_the_classifier_is_searchable(name):
    space = space_of(name)
    assert len(space.graph.groups) == SEARCHABLE[name]
    assert [(width, reason) for _, width, reason in space.frozen] == [(10, "reaches the model's output")]


@pytest.mark.parametrize("size", [s if s == 32 else pytest.param(s, marks=pytest.mark.slow) for s in SIZES])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_counts_are_exact_at_every_input_size(name, size):
    # 64 and 224 trace every model again (about 2 s each on two cores): marked slow, run in CI.
    space = space_of(name)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    for tokens in token_vectors(space):
        child = space.inherit(space.model, tokens).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            assert child(x).shape == (1, 10)
        assert sum(p.numel() for p in child.parameters()) == space.count_params(tokens)
        # Another size traces again; a grouping that differed from the first trace's would raise here.
        assert counter.get_total_flops() == 2 * len(x) * space.count_macs(tokens, input_size=(size, size)), tokens


def masked(model: nn.Module, graph, widths: list[int], seed: int = 0) -> nn.Module:
    """The parent with a random choice of each group's dropped channels computing zero (``ChannelGraph.mask``: every
    weight they hold set to zero, running variances to one), so nothing reads them."""
    rng = random.Random(seed)
    dropped = {k: rng.sample(range(g.width), g.width - w) for k, (g, w) in enumerate(zip(graph.groups, widths,
                                                                                         strict=True))}
    return graph.mask(model, dropped).eval()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_children_compute_the_parent_on_the_channels_they_keep(name):
    space = space_of(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    parent = space.model.double()
    try:
        for tokens in token_vectors(space):
            parent_masked = masked(parent, space.graph, space.group_widths(tokens))
            child = space.inherit(parent_masked, tokens, importance="group_l2").eval()
            with torch.no_grad():
                assert torch.allclose(child(x), parent_masked(x), rtol=0, atol=1e-10), tokens
        full = space.inherit(parent, space.init_tokens()).eval()
        with torch.no_grad():
            assert torch.equal(full(x), parent(x))
    finally:
        space.model.float()


# --- the tracer items, one small model each -------------------------------------------------------------------------
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_inplace_variants_of_elementwise_ops_have_rules():
    # F.relu6(x, inplace=True) runs aten.relu6_, which had no rule while relu6 and hardtanh_ had.
    for name, op in list(RULES.items()):
        if op.apply in (unary, binary) and not name.endswith("_") and hasattr(torch.ops.aten, name + "_"):
            assert name + "_" in RULES and RULES[name + "_"].apply is op.apply, name


class Shuffled(nn.Module):
    """Two convs concatenated and shuffled in ``groups`` groups, read by a 1×1 conv."""

    def __init__(self, width: int = 6, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups
        self.a, self.b = nn.Conv2d(3, width, 3, padding=1), nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(2 * width)
        self.c = nn.Conv2d(2 * width, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channel_shuffle(torch.cat([self.a(x), F.relu6(self.b(x), inplace=True)], 1), self.groups)
        return self.fc(self.c(F.relu(self.bn(x))).mean((2, 3)))


def test_a_channel_shuffle_couples_its_groups_and_interleaves_them():
    graph = trace_channels(Shuffled(), X)
    assert [(g.producers, g.width) for g in graph.groups] == [(["a", "b"], 6), (["c"], 8)]
    # Channel j of a and of b sit side by side after the shuffle: every channel fills 2 positions.
    assert [(s.group, s.repeat) for s in graph.layout["c.weight"][1].segments] == [(0, 2)]
    assert [(s.group, s.repeat) for s in graph.layout["bn.weight"][0].segments] == [(0, 2)]


def test_a_split_whose_fixed_factor_is_ambiguous_stays_frozen():
    graph = trace_channels(Shuffled(width=2), X)  # 4 channels split 2 × 2: which one follows the width?
    assert [g.name for g in graph.groups] == ["c"]
    assert "which of the two is fixed cannot be told" in graph.frozen[0][2]


def test_inplace_relu6_and_shuffle_children_keep_the_parents_function():
    torch.manual_seed(0)
    space = ModelSpace(randomise(Shuffled()), example_input=X[:1])
    x = X.double()
    parent = space.model.double()
    for tokens in ([0, 0], [2, 1], space.init_tokens()):
        parent_masked = masked(parent, space.graph, space.group_widths(tokens))
        child = space.inherit(parent_masked, tokens, importance="group_l2").eval()
        with torch.no_grad():
            assert torch.allclose(child(x), parent_masked(x), rtol=0, atol=1e-10)


class Ghosted(nn.Module):
    """A ghost module's ``[P, P]`` (a conv and its depthwise copy) added to a 1×1 conv's 8 channels, then chunked."""

    def __init__(self) -> None:
        super().__init__()
        self.p, self.cheap = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.shortcut = nn.Conv2d(3, 8, 1)
        self.left, self.right = nn.Conv2d(4, 6, 1), nn.Conv2d(4, 6, 1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p(x)
        x1, x2 = (torch.cat([p, self.cheap(p)], 1) + self.shortcut(x)).chunk(2, dim=1)
        return self.fc(torch.cat([self.left(x1), self.right(x2)], 1).mean((2, 3)))


def test_an_add_of_unaligned_runs_cuts_the_wider_group_and_chunk_couples_its_pieces():
    graph = trace_channels(Ghosted(), X)
    # shortcut's 8 channels are cut in two halves, each coupled with p (and so with each other).
    assert [(g.producers, g.width) for g in graph.groups] == [
        (["p", "shortcut[:4]", "shortcut[4:]"], 4), (["left"], 6), (["right"], 6)]
    assert [s.group for s in graph.layout["shortcut.weight"][0].segments] == [0, 0]
    torch.manual_seed(0)
    space = ModelSpace(Ghosted(), example_input=X[:1])
    parent = space.model.double()
    for tokens in ([0, 0, 0], [1, 3, 2]):
        parent_masked = masked(parent, space.graph, space.group_widths(tokens))
        child = space.inherit(parent_masked, tokens, importance="group_l2").eval()
        with torch.no_grad():
            assert torch.allclose(child(X.double()), parent_masked(X.double()), rtol=0, atol=1e-10)
