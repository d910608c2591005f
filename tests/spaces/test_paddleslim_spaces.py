"""MobileNetV1Space, MobileNetV2Space, ResNetSpace: PaddleSlim's tokens, exact counts, training, inheritance."""

from __future__ import annotations

import random

import pytest
import torch
from _cnn_models import randomise
from torch.utils.flop_counter import FlopCounterMode

from sanas import SANAS, get_space, space_from_config
from sanas.spaces import MobileNetV1Space, MobileNetV2Space, ResNetSpace
from sanas.training import Recipe, evaluate_candidate, prepare_data

SPACES = ("MobileNetV1Space", "MobileNetV2Space", "ResNetSpace")


def random_tokens(space, rng: random.Random) -> list[int]:
    return [rng.randrange(r) for r in space.range_table()]


def test_token_tables_are_paddleslims():
    # The range tables and init tokens of paddleslim/nas/search_space/mobilenetv{1,2}.py and resnet.py.
    v2 = MobileNetV2Space()
    assert v2.range_table() == [7, 5, 8, 6, 2, 5, 8, 6, 2, 5, 8, 6, 2, 5, 10, 6, 2, 5, 10, 6, 2, 5, 12, 6, 2]
    assert v2.settings(v2.init_tokens()) == [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3),
                                             (6, 96, 3, 1, 3), (6, 160, 3, 2, 3), (6, 320, 1, 1, 3)]
    v1 = MobileNetV1Space()
    assert v1.range_table() == [7, 8, 8, 2, 8, 10, 2, 10, 10, 2, 10, 12, 2, 12, 11, 2, 11, 14, 2, 6, 14, 13, 2, 13,
                                12, 2, 12, 12, 2]
    assert [f2 for _, f2, _, _ in v1.layers(v1.init_tokens())] == [64, 128, 128, 256, 256, 512] + [512] * 5 + [1024,
                                                                                                               1024]
    assert v1.values(v1.init_tokens())[0] == 32
    resnet = ResNetSpace()
    assert resnet.range_table() == [7, 5, 7, 6, 6, 13, 5, 6]
    assert resnet.values(resnet.init_tokens()) == [64, 3, 128, 4, 256, 6, 512, 3]


@pytest.mark.parametrize("name", SPACES)
def test_built_networks_match_the_analytic_params(name):
    space = get_space(name)
    rng = random.Random(0)
    for tokens in [space.init_tokens()] + [random_tokens(space, rng) for _ in range(30)]:
        with torch.device("meta"):
            net = space.token2arch(tokens)
        assert sum(p.numel() for p in net.parameters()) == space.count_params(tokens), tokens


@pytest.mark.parametrize(("name", "size"), [("MobileNetV1Space", (32, 32)), ("MobileNetV2Space", (32, 32)),
                                            ("ResNetSpace", (32, 32)), ("MobileNetV2Space", (28, 44))])
def test_macs_agree_with_flop_counter(name, size):
    space = get_space(name, in_channels=1, num_classes=7)
    rng = random.Random(1)
    for tokens in [space.init_tokens()] + [random_tokens(space, rng) for _ in range(2)]:
        with torch.device("meta"):
            net = space.token2arch(tokens).eval()
            x = torch.zeros(1, 1, *size)
        with FlopCounterMode(display=False) as counter:
            net(x)
        assert counter.get_total_flops() == 2 * space.count_macs(tokens, size), tokens


def test_a_paddleslim_config_works_unchanged():
    with pytest.warns(UserWarning, match="input_size, output_size, block_num .* are unused, as in PaddleSlim"):
        sa = SANAS([("MobileNetV2Space", {"input_size": 32, "output_size": 1, "block_num": 5})], search_steps=2,
                   save_checkpoint=None)
    assert sa.next_archs()[0].sanas_tokens == MobileNetV2Space().init_tokens()
    space = get_space("ResNetSpace", num_classes=100)
    assert space_from_config(space.config()).fingerprint() == space.fingerprint()


def test_scratch_evaluation_through_the_trainer():
    space = MobileNetV2Space(in_channels=1)
    tokens = [0] * 25  # the smallest network: trains in seconds
    data = prepare_data("synthetic", train_size=48, test_size=16, channels=1)
    result = evaluate_candidate(tokens, space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu", cutout=0),
                                progress="none")
    assert result.status == "ok" and 0.0 <= result.reward <= 1.0 and result.params == space.count_params(tokens)


# Parents small enough to inherit from quickly; the width tokens are then drawn at random.
PARENTS = {"MobileNetV1Space": [2, 2, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
           "MobileNetV2Space": [3, 2, 3, 1, 0, 2, 3, 1, 1, 2, 3, 0, 0, 2, 3, 1, 0, 2, 3, 0, 1, 2, 3, 0, 0],
           "ResNetSpace": [0, 0, 0, 0, 0, 0, 0, 0]}


def structure_preserving(space, parent_tokens, rng):
    """Random widths up to a little above the parent's (narrower and wider groups), same depths and kernels."""
    tokens = list(parent_tokens)
    for i, r in enumerate(space.range_table()):
        if i not in space.STRUCTURE:
            tokens[i] = rng.randrange(min(r, parent_tokens[i] + 2))
    if isinstance(space, MobileNetV1Space):  # keep every depthwise conv at multiplier 1
        while any(m > 1 for m in space.multipliers(tokens)):
            tokens = [t - 1 if i not in space.STRUCTURE and t > 0 else t for i, t in enumerate(tokens)]
    return tokens


@pytest.mark.parametrize("name", SPACES)
def test_inherit_same_tokens_copies_and_children_match_the_counts(name):
    space = get_space(name, in_channels=1)
    torch.manual_seed(0)
    parent = randomise(space.token2arch(PARENTS[name]))
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(space.inherit(parent, PARENTS[name]).eval()(x), parent(x))
    rng = random.Random(2)
    for _ in range(2):
        tokens = structure_preserving(space, PARENTS[name], rng)
        child = space.inherit(parent, tokens).eval()
        assert sum(p.numel() for p in child.parameters()) == space.count_params(tokens), tokens
        assert child(x).shape == (3, 10)


def test_widened_mobilenet_v2_computes_the_parents_function():
    space = MobileNetV2Space(in_channels=1)
    torch.manual_seed(0)
    parent = randomise(space.token2arch(PARENTS["MobileNetV2Space"]))
    wider = [t + 1 if i not in space.STRUCTURE and i % 4 != 1 else t for i, t in enumerate(PARENTS["MobileNetV2Space"])]
    child = space.inherit(parent, wider).eval()
    assert space.count_params(wider) > space.count_params(PARENTS["MobileNetV2Space"])
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert (child(x) - parent(x)).abs().max() < 1e-4


def test_inherit_refuses_other_depths_kernels_and_spaces():
    space = ResNetSpace(in_channels=1)
    parent = space.token2arch([0] * 8)
    with pytest.raises(ValueError, match=r"keeps the parent's depths and kernel sizes.*positions \[1\]"):
        space.inherit(parent, [0, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"the parent is a ResNetSpace network with 10 classes and 1 input channels, "
                                         r"the child a ResNetSpace one with 10 and 3"):
        ResNetSpace().inherit(parent, [0] * 8)
    v1 = MobileNetV1Space(in_channels=1)
    with pytest.raises(ValueError, match=r"depthwise convs keep their channels .* layer 0's multiplies them by 3"):
        v1.inherit(v1.token2arch(PARENTS["MobileNetV1Space"]), [2, 5, *PARENTS["MobileNetV1Space"][2:]])
    with pytest.raises(ValueError, match=r"the parent is a Linear, expected a network built by MobileNetV2Space"):
        MobileNetV2Space().inherit(torch.nn.Linear(2, 2), MobileNetV2Space().init_tokens())
