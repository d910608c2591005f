"""Children from a trained parent: exact copies, function-preserving widening, exact pruning of dead channels."""

from __future__ import annotations

import random

import pytest
import torch
from _cnn_models import randomise
from torch import nn

from sanas import get_space, inherit
from sanas.network.operations import FactorizedReduce
from sanas.spaces.darts import darts_layout
from sanas.spaces.inherit import _half_bounds, _halved_groups, select_channels

FILTERS = [4, 6, 8, 12, 16, 24, 32]


def darts(genotype: str, layers: int = 5, **extra):
    return get_space("DartsSpace", layers=layers, filter_num=FILTERS, init_channels=8, genotype=genotype, **extra)


def outputs(net: nn.Module, in_channels: int = 3, seed: int = 1) -> torch.Tensor:
    x = torch.randn(4, in_channels, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net.eval()(x)


def kill_channels(net: nn.Module, layout, widths: list[int], child_widths: list[int]) -> None:
    """Zero, in the parent, the channels a narrower child will drop: γ = β = 0 in every BatchNorm of the group
    and zero output filters. Such channels are 0 everywhere, so removing them cannot change the function."""
    halved = _halved_groups(layout)
    state = net.state_dict()
    for k, (c, c_new) in enumerate(zip(widths, child_widths, strict=True)):
        if c_new >= c:
            continue
        if k in halved:
            h = c // 2
            dead = list(range(c_new // 2, h)) + list(range(h + c_new - c_new // 2, c))
        else:
            dead = list(range(c_new, c))
        for name, dims in layout.items():
            spec = dims.get(0)
            if spec is None or spec.reads or spec.segments[0].group != k:
                continue
            seg = spec.segments[0]
            lo = 0 if seg.half in (None, 0) else c // 2
            hi = c if seg.half in (None, 1) else c // 2
            rows = [d - lo for d in dead if lo <= d < hi]
            if not rows or name.endswith("running_var") or name.endswith("running_mean"):
                continue
            with torch.no_grad():
                state[name][rows] = 0.0
        for name, dims in layout.items():  # and the weights that read them (zero times zero: the same function)
            for dim, spec in dims.items():
                if not spec.reads:
                    continue
                offset, positions = 0, []
                for seg in spec.segments:
                    if seg.group is None:
                        offset += seg.size
                        continue
                    lo, hi = _half_bounds(widths[seg.group], seg.half)
                    if seg.group == k:
                        positions += [offset + (d - lo) * seg.repeat + r for d in dead if lo <= d < hi
                                      for r in range(seg.repeat)]
                    offset += (hi - lo) * seg.repeat
                if positions:
                    with torch.no_grad():
                        state[name].index_fill_(dim, torch.tensor(positions), 0.0)


def tokens_for(space, widths):
    return [space.filter_num.index(w) for w in widths]


@pytest.mark.parametrize("genotype", ["PADDLESLIM_DARTS_V2", "DARTS_V2"])
def test_same_tokens_copy_the_parent_exactly(genotype):
    space = darts(genotype)
    parent = randomise(space.token2arch(space.init_tokens()))
    child = inherit(parent, space.init_tokens())
    for (name, a), b in zip(parent.state_dict().items(), child.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(outputs(parent), outputs(child))


@pytest.mark.parametrize("genotype", ["PADDLESLIM_DARTS_V2", "DARTS_V2"])
@pytest.mark.parametrize("layers", [5, 8])
def test_widened_child_computes_the_parents_function(genotype, layers):
    space = darts(genotype, layers=layers)
    rng = random.Random(layers)
    parent_tokens = [rng.randrange(0, 4) for _ in range(layers)]
    parent = randomise(space.token2arch(parent_tokens))
    reference = outputs(parent)
    for trial in range(3):
        tokens = [rng.randrange(t, len(FILTERS)) for t in parent_tokens]
        child = inherit(parent, tokens)
        assert child.count_params() == space.count_params(tokens)
        diff = (outputs(child) - reference).abs().max().item()
        assert diff < 1e-5 * max(1.0, reference.abs().max().item()), (trial, tokens, diff)


@pytest.mark.parametrize("genotype", ["PADDLESLIM_DARTS_V2", "DARTS_V2"])
@pytest.mark.parametrize("importance", ["bn", "l1", "group_l2"])
def test_narrower_child_drops_exactly_the_unimportant_channels(genotype, importance):
    """Random mixes of narrower and wider cells: with the dropped channels dead in the parent, the child (cut
    consistently everywhere each group appears, FactorizedReduce halves included) computes the same function."""
    space = darts(genotype, layers=8)
    rng = random.Random(7)
    parent_tokens = [rng.randrange(2, len(FILTERS)) for _ in range(8)]
    for trial in range(4):
        parent = randomise(space.token2arch(parent_tokens), seed=trial)
        tokens = [rng.randrange(len(FILTERS)) for _ in range(8)]
        widths, child_widths = space.widths(parent_tokens), space.widths(tokens)
        kill_channels(parent, darts_layout(parent), widths, child_widths)
        reference = outputs(parent)
        child = inherit(parent, tokens, importance=importance)
        assert child.count_params() == space.count_params(tokens)
        diff = (outputs(child) - reference).abs().max().item()
        assert diff < 1e-5 * max(1.0, reference.abs().max().item()), (trial, tokens, diff)


def test_random_children_have_the_analytic_parameter_count():
    rng = random.Random(3)
    for genotype in ("PADDLESLIM_DARTS_V2", "DARTS_V2"):
        space = get_space("DartsSpace", genotype=genotype)  # the full 20-cell space, widths up to 108
        parent = space.token2arch([rng.randrange(10) for _ in range(20)])
        for _ in range(2):
            tokens = [rng.randrange(10) for _ in range(20)]
            child = inherit(parent, tokens)
            assert child.count_params() == space.count_params(tokens)
            assert child.widths == space.widths(tokens)


def test_factorized_reduce_keeps_its_split():
    """A group produced by a FactorizedReduce takes C'//2 channels from the parent's first half."""
    space = darts("PADDLESLIM_DARTS_V2")
    parent = space.token2arch(space.init_tokens())
    layout = darts_layout(parent)
    halved = _halved_groups(layout)
    fr_cells = {k for k, cell in enumerate(parent.cells)
                if any(isinstance(m, FactorizedReduce) for m in cell.modules())}
    assert halved == fr_cells and halved
    index = select_channels(torch.tensor([5.0, 4, 3, 2, 1, 0, 9, 8]), 5, halved=True)
    assert index.tolist() == [0, 1, 4, 6, 7]  # the best 2 of [0, 4), the best 3 of [4, 8)
    assert select_channels(torch.tensor([5.0, 4, 3, 2]), 7, halved=True).tolist() == [0, 1, 0, 2, 3, 2, 3]


def test_importance_picks_the_largest_bn_scales():
    space = get_space("PlainCNNSpace")
    parent = space.token2arch([2, 2, 2, 2])  # 24 channels per cell
    with torch.no_grad():
        bn = parent.cells[1][1]
        bn.weight.copy_(torch.arange(24, dtype=torch.float32))
    child = inherit(parent, [2, 0, 2, 2], importance="bn")  # cell 1 keeps 8 of 24
    assert torch.equal(child.cells[1][1].weight, torch.arange(16, 24, dtype=torch.float32))
    assert torch.equal(child.cells[1][0].weight, parent.cells[1][0].weight[16:])
    assert torch.equal(child.cells[2][0].weight, parent.cells[2][0].weight[:, 16:])


def test_plain_cnn_widening_is_exact():
    space = get_space("PlainCNNSpace")
    parent = randomise(space.token2arch([1, 2, 0, 3]))
    child = inherit(parent, [4, 2, 3, 4])
    assert (outputs(child, 1) - outputs(parent, 1)).abs().max() < 1e-5
    assert sum(p.numel() for p in child.parameters()) == space.count_params([4, 2, 3, 4])


def test_widened_replicas_are_not_symmetric():
    """Replicas share the outgoing weights unequally, so fine-tuning can tell them apart."""
    space = get_space("PlainCNNSpace")
    parent = space.token2arch([0, 0, 0, 0])  # 8 channels per cell
    # cell 0: 8 → 16, every channel replicated once; an untrained parent's BatchNorm γ are all 1, so "bn" keeps the
    # parent's channel order (the child's channels follow the criterion's order)
    child = inherit(parent, [1, 0, 0, 0], importance="bn")
    reads = child.cells[1][0].weight  # [8, 16, 3, 3]
    assert torch.allclose(reads[:, :8] + reads[:, 8:], parent.cells[1][0].weight, atol=1e-6)
    assert not torch.allclose(reads[:, :8], reads[:, 8:])


def test_load_model_output_is_a_parent(tmp_path):
    from sanas.training import Recipe, prepare_data, train_final

    space = darts("DARTS_V2", layers=3, auxiliary=False)
    data = prepare_data("synthetic", train_size=40, test_size=10)
    train_final(space.init_tokens(), space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu"), tmp_path,
                progress="none", onnx=False)
    from sanas import load_model

    parent = load_model(tmp_path)
    child = inherit(parent, [len(FILTERS) - 1] * 3)
    assert (outputs(child) - outputs(parent)).abs().max() < 1e-4


def test_bad_parents_are_refused_naming_both_sides():
    child_space = darts("PADDLESLIM_DARTS_V2")
    with pytest.raises(ValueError, match=r"genotype 'DARTS_V2' \(parent\) vs 'PADDLESLIM_DARTS_V2' \(child\)"):
        inherit(darts("DARTS_V2").token2arch([1] * 5), [1] * 5, space=child_space)
    with pytest.raises(ValueError, match=r"num_classes 100 \(parent\) vs 10 \(child\)"):
        inherit(darts("DARTS_V2", num_classes=100).token2arch([1] * 5), [1] * 5, space=darts("DARTS_V2"))
    with pytest.raises(ValueError, match=r"in_channels 1 \(parent\) vs 3 \(child\)"):
        inherit(darts("DARTS_V2", in_channels=1).token2arch([1] * 5), [1] * 5, space=darts("DARTS_V2"))
    with pytest.raises(ValueError, match="the parent is a PlainCNN, expected a DartsNetwork"):
        inherit(get_space("PlainCNNSpace").token2arch([0] * 4), [1] * 5, space=child_space)
    with pytest.raises(ValueError, match="carries no search space"):
        inherit(nn.Linear(2, 2), [1] * 5)
    with pytest.raises(ValueError, match="importance is 'magic'"):
        inherit(child_space.token2arch([1] * 5), [0] * 5, importance="magic")
    with pytest.raises(ValueError, match="token at position 0"):
        inherit(child_space.token2arch([1] * 5), [99] * 5)


def test_parent_and_child_may_differ_in_auxiliary_head():
    with_aux, without = darts("DARTS_V2"), darts("DARTS_V2", auxiliary=False)
    parent = randomise(with_aux.token2arch([1] * 5))
    child = inherit(parent, [2] * 5, space=without)
    assert child.auxiliary_head is None
    assert (outputs(child) - outputs(parent)).abs().max() < 1e-5
    child2 = inherit(randomise(without.token2arch([1] * 5)), [2] * 5, space=with_aux)
    assert child2.auxiliary_head is not None


def test_a_space_s_default_criterion_decides_every_way_of_inheriting():
    """A space that sets ``default_importance`` gets it from a direct ``space.inherit``, ``sanas.inherit`` and the
    trainer alike (the built-in spaces' ``inherit`` once defaulted to the constant "bn" whatever the attribute)."""
    import inspect

    from sanas.spaces import SPACES, ModelSpace, PlainCNNSpace, SearchSpace
    from sanas.training import Recipe, Trainer, prepare_data

    class ByFilterNorms(PlainCNNSpace):
        default_importance = "l1"

    space = ByFilterNorms()
    parent = space.token2arch([2, 2, 2, 2])  # 24 channels per cell
    with torch.no_grad():
        parent.cells[1][1].weight.copy_(torch.arange(24, dtype=torch.float32))  # |γ|: keep the last 8
        parent.cells[1][0].weight.mul_(0).add_(torch.arange(24, 0, -1, dtype=torch.float32).view(-1, 1, 1, 1))
    tokens = [2, 0, 2, 2]  # cell 1 keeps 8 of 24: the first 8 by filter L1 norm
    by_l1 = parent.cells[1][0].weight[:8]
    data = prepare_data("synthetic", train_size=32, test_size=8, channels=space.in_channels)
    children = [space.inherit(parent, tokens), inherit(parent, tokens),
                Trainer(space, tokens, data, Recipe(evaluation="inherit", device="cpu"), parent=parent).net]
    for child in children:
        assert torch.equal(child.cells[1][0].weight.detach(), by_l1)
    assert torch.equal(space.inherit(parent, tokens, "bn").cells[1][0].weight, parent.cells[1][0].weight[16:])
    for cls in [*SPACES.values(), ModelSpace]:
        if cls.inherit is not SearchSpace.inherit:  # spaces that inherit at all
            assert inspect.signature(cls.inherit).parameters["importance"].default is None, cls.__name__
