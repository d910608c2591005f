"""PlainCNNSpace: analytic counts equal the built network's, shapes, the trainer contract, validation."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sanas import get_space, space_from_config
from sanas.spaces import PlainCNNSpace
from sanas.training import Recipe, evaluate_candidate, prepare_data


def test_every_network_of_the_default_space_matches_its_analytic_params():
    space = PlainCNNSpace()
    assert space.range_table() == [5, 5, 5, 5]
    assert space.cell_types() == ["normal", "reduction", "reduction", "normal"]
    for tokens in itertools.product(range(5), repeat=4):
        with torch.device("meta"):
            net = space.token2arch(tokens)
        assert sum(p.numel() for p in net.parameters()) == space.count_params(tokens), tokens


@pytest.mark.parametrize(("config", "size"), [({}, (32, 32)), ({}, (28, 28)),
                                              ({"layers": 6, "stem_stride": 1, "in_channels": 3}, (32, 32)),
                                              ({"layers": 3, "num_classes": 7}, (17, 23))])
def test_macs_agree_with_flop_counter(config, size):
    space = PlainCNNSpace(**config)
    for tokens in ([0] * space.layers, space.init_tokens(), [len(space.filter_num) - 1] * space.layers):
        net = space.token2arch(tokens).eval()
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, space.in_channels, *size))
        assert space.count_macs(tokens, size) * 2 == counter.get_total_flops(), tokens


def test_forward_contract_and_registry():
    space = get_space("PlainCNNSpace", layers=5, filter_num=[4, 8, 16])
    assert space_from_config(space.config()).fingerprint() == space.fingerprint()
    net = space.token2arch([2, 1, 0, 1, 2])
    x = torch.randn(7, 1, 32, 32)
    logits, aux = net.train()(x)
    assert logits.shape == (7, 10) and aux is None
    assert net.eval()(x).shape == (7, 10)
    assert net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last)).shape == (7, 10)


def test_trains_through_the_sanas_trainer():
    space = PlainCNNSpace(filter_num=[4, 8])
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    result = evaluate_candidate([1, 1, 1, 1], space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu",
                                                                   cutout=0), progress="none")
    assert result.status == "ok" and 0.0 <= result.reward <= 1.0


@pytest.mark.parametrize(("config", "message"), [
    ({"filter_num": [8, 4]}, "strictly ascending"), ({"filter_num": []}, "filter_num is empty"),
    ({"layers": 2}, "layers is 2"), ({"stem_stride": 0}, "stem_stride is 0"),
    ({"in_channels": 1.5}, "in_channels is 1.5"), ({"init_tokens": [0, 0, 0, 9]}, "position 3 is 9"),
])
def test_bad_config(config, message):
    with pytest.raises(ValueError, match=message):
        PlainCNNSpace(**config)
