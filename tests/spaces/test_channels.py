"""Channel groups found by tracing: the coupling is right, counts are exact, what cannot be followed is frozen."""

from __future__ import annotations

import random

import pytest
import torch
from _cnn_models import (
    ConcatFlatten,
    DataDependent,
    MobileNetV2,
    OneExampleOnly,
    ResNet,
    SpatialSoftmax,
    SplitChannels,
    SqueezeExcite,
    randomise,
)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sanas.spaces.channels import trace_channels

X = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def check_counts(net: nn.Module, trials: int = 6, seed: int = 0) -> None:
    """Random widths: the shrunk network runs, and has exactly the analytic parameters and MACs."""
    graph = trace_channels(net, X)
    rng = random.Random(seed)
    for _ in range(trials):
        widths = [rng.randint(1, g.width) for g in graph.groups]
        child = graph.shrink(net, widths).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            assert child(X).shape == (2, 10)
        assert sum(p.numel() for p in child.parameters()) == graph.count_params(widths), widths
        assert counter.get_total_flops() == 2 * len(X) * graph.count_macs(widths), widths


@pytest.mark.parametrize("net", [ResNet, MobileNetV2, ConcatFlatten, SqueezeExcite], ids=lambda c: c.__name__)
def test_random_widths_have_exact_counts(net):
    torch.manual_seed(0)
    check_counts(net())


def test_residual_adds_couple_every_conv_of_a_stage():
    graph = trace_channels(ResNet(blocks=2), X)
    # Per stage: one residual stream (stem or shortcut conv + every block's second conv) and one inner group per
    # block.
    streams = sorted(g.producers for g in graph.groups if len(g.producers) > 1)
    assert streams == [["conv", "layers.0.conv2", "layers.1.conv2"],
                       ["layers.2.conv2", "layers.2.shortcut.0", "layers.3.conv2"],
                       ["layers.4.conv2", "layers.4.shortcut.0", "layers.5.conv2"]]
    assert len(graph.groups) == 3 + 6
    assert [(name, reason) for name, _, reason in graph.frozen] == [("fc", "reaches the model's output")]


def test_concatenation_then_flatten_keeps_both_branches_apart():
    # Torch-Pruning 1.6.1 puts `right` into `left`'s group here (with `left`'s 6 channels for its 4); the tracer
    # keeps them apart and maps each to its 64 flattened positions in fc1.
    graph = trace_channels(ConcatFlatten(), X)
    assert [(g.name, g.width) for g in graph.groups] == [("stem", 8), ("left", 6), ("right", 4), ("fc1", 24)]
    spec = graph.layout["fc1.weight"][1]
    assert [(s.group, s.repeat) for s in spec.segments] == [(1, 64), (2, 64)] and spec.reads


def test_depthwise_convs_carry_their_input_group():
    graph = trace_channels(MobileNetV2(), X)
    expansion = next(g for g in graph.groups if g.producers == ["features.3.conv.0"])
    k = graph.groups.index(expansion)
    assert graph.layout["features.3.conv.3.weight"] == {0: graph.layout["features.3.conv.0.weight"][0]}
    assert graph.layout["features.3.conv.3.weight"][0].segments[0].group == k


def test_squeeze_excite_multiplication_couples_the_excitation_with_the_features():
    graph = trace_channels(SqueezeExcite(), X)
    assert sorted(g.producers for g in graph.groups) == [["conv", "excite"], ["conv2"], ["squeeze"]]


def test_what_the_tracer_cannot_follow_is_frozen_with_the_reason():
    graph = trace_channels(SplitChannels(), X)
    assert [g.name for g in graph.groups] == ["conv2"]
    assert graph.frozen[0][:2] == ("conv", 8) and "split or sliced along channels" in graph.frozen[0][2]
    grouped = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 4, 1), nn.Flatten(),
                            nn.LazyLinear(10))
    grouped(X)
    graph = trace_channels(grouped, X)
    assert [g.name for g in graph.groups] == ["2"]
    assert any("grouped convolution at 1 (groups=2)" in reason for _, _, reason in graph.frozen)


def test_data_dependent_control_flow_is_refused_naming_the_line():
    with pytest.raises(ValueError, match=r"cannot trace DataDependent: its control flow depends on the input's values"
                                         r" \(at _cnn_models.py:\d+ in forward: `if x.mean\(\) > 0:`\)"):
        trace_channels(DataDependent(), X)


def test_shrink_leaves_the_model_untouched_and_updates_layer_attributes():
    net = randomise(ResNet())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    graph = trace_channels(net, X)
    child = graph.shrink(net, [max(1, g.width // 2) for g in graph.groups])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert (child.layers[0].conv1.in_channels, child.layers[0].conv1.out_channels) == (4, 4)
    assert child.layers[0].bn1.num_features == 4 and child.fc.in_features == 16


def describe(graph):
    """Everything a trace found: groups, frozen groups, layout, and the counts at half the widths."""
    half = [max(1, w // 2) for w in graph.widths]
    return ([(g.producers, g.width, g.kind, g.resolutions) for g in graph.groups], graph.frozen, graph.layout,
            graph.count_params(half), graph.count_macs(half), graph.count_macs(graph.widths))


@pytest.mark.parametrize("net", [ResNet, MobileNetV2, ConcatFlatten, SpatialSoftmax], ids=lambda c: c.__name__)
def test_groups_and_counts_do_not_depend_on_the_examples_batch(net):
    # Issue #20: SpatialSoftmax's conv was a searchable group with a batch-1 example and frozen with batch 2 or 4.
    torch.manual_seed(0)
    net = net()
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    one, four = trace_channels(net, x[:1]), trace_channels(net, x)
    assert describe(one) == describe(four)


def test_a_reshape_that_merges_the_batch_with_the_channels_is_frozen():
    graph = trace_channels(SpatialSoftmax(), X[:1])
    assert [g.name for g in graph.groups] == ["conv2"]
    assert graph.frozen[0][:2] == ("conv", 8) and "reshaped across channels" in graph.frozen[0][2]


def test_a_forward_for_one_example_only_is_refused():
    net = OneExampleOnly()
    assert net(X[:1]).shape == (1, 10)
    with pytest.raises(ValueError, match=r"cannot trace OneExampleOnly: .*traces on a batch of 2 copies of the "
                                         r"example: the forward must accept any batch size"):
        trace_channels(net, X[:1])
