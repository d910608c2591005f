"""DartsSpace: the published parameter counts, analytic == built counts, MACs, and token validation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sanas import DartsSpace, get_space, space_from_config
from sanas.spaces import SPACES

DARTS_SA_TOKENS = [5, 5, 0, 5, 5, 10, 7, 7, 5, 7, 7, 11, 10, 12, 10, 0, 5, 3, 10, 8]
SMALL = {"filter_num": [4, 8, 12, 16, 24, 32, 48, 64], "init_channels": 8}


def random_tokens(space, rng: random.Random) -> list[int]:
    return [rng.randrange(r) for r in space.range_table()]


def test_published_counts():
    space = get_space("DartsSpace")
    assert space.init_tokens() == [5] * 6 + [7] * 7 + [10] * 7
    assert space.widths(space.init_tokens()) == [36] * 6 + [72] * 7 + [144] * 7
    assert space.count_params(space.init_tokens()) == 3_767_302
    assert space.count_params(DARTS_SA_TOKENS) == 3_344_396
    paper = get_space("DartsSpace", genotype="DARTS_V2")
    assert paper.count_params(paper.init_tokens()) == 3_349_342


def test_range_of_space():
    space = get_space("DartsSpace")
    assert space.range_table() == [14] * 20
    assert 20_000 < space.count_params([0] * 20) < 25_000
    assert 25.2e6 < space.count_params([13] * 20) < 25.4e6


@pytest.mark.parametrize(
    ("config", "n"),
    [({}, 200), ({"genotype": "DARTS_V2"}, 200), ({"layers": 5, **SMALL}, 200),
     ({"layers": 8, "genotype": "DARTS_V2", **SMALL}, 200), ({"layers": 5, "in_channels": 1, "num_classes": 7,
                                                           **SMALL}, 20)],
)
def test_built_network_matches_analytic_params(config, n):
    space = get_space("DartsSpace", **config)
    rng = random.Random(1234)
    for _ in range(n):
        tokens = random_tokens(space, rng)
        with torch.device("meta"):  # shapes only: counting needs no memory or init
            net = space.token2arch(tokens)
        assert net.count_params() == space.count_params(tokens), tokens
    # The aux head is built (it trains) but never counted.
    assert net.count_params(include_aux=True) > net.count_params()


@pytest.mark.parametrize(
    ("config", "input_size"),
    [({}, (32, 32)), ({"genotype": "DARTS_V2"}, (32, 32)), ({"layers": 5, **SMALL}, (32, 32)),
     ({"layers": 8, **SMALL}, (28, 28)), ({"layers": 5, "in_channels": 1, **SMALL}, (27, 45))],
)
def test_macs_agree_with_flop_counter(config, input_size):
    space = get_space("DartsSpace", **config)
    rng = random.Random(7)
    for tokens in [space.init_tokens()] + [random_tokens(space, rng) for _ in range(3)]:
        with torch.device("meta"):
            net = space.token2arch(tokens).eval()
            x = torch.zeros(1, space.in_channels, *input_size)
        with FlopCounterMode(display=False) as counter:
            net(x)
        assert counter.get_total_flops() == 2 * space.count_macs(tokens, input_size), tokens


def test_reference_macs_are_stable():
    # Regression guard on the whole MAC formula (PaddleSlim genotype, init widths, one 32×32 image).
    space = get_space("DartsSpace")
    assert space.count_macs(space.init_tokens()) == 589_101_696


def test_smaller_layers_layout():
    space = get_space("DartsSpace", layers=5, **SMALL)
    assert space.cell_types() == ["normal", "reduction", "normal", "reduction", "normal"]
    assert space.widths(space.init_tokens()) == [8, 16, 16, 32, 32]
    assert len(space.range_table()) == 5
    space8 = get_space("DartsSpace", layers=8, **SMALL)
    assert [i for i, t in enumerate(space8.cell_types()) if t == "reduction"] == [2, 5]


def test_configs_forms_are_equivalent():
    a = get_space("DartsSpace", layers=5, **SMALL)
    b = get_space([("DartsSpace", {"layers": 5, **SMALL})])
    c = get_space(["DartsSpace"], layers=5, **SMALL)
    d = space_from_config(a.config())
    assert a.fingerprint() == b.fingerprint() == c.fingerprint() == d.fingerprint()
    assert get_space(["DartsSpace"]).fingerprint() == get_space("DartsSpace").fingerprint()
    assert a.fingerprint() != get_space("DartsSpace", layers=5, genotype="DARTS_V2", **SMALL).fingerprint()
    assert isinstance(a, DartsSpace) and "DartsSpace" in SPACES


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown search space 'Nope'.*DartsSpace"):
        get_space("Nope")
    with pytest.raises(ValueError, match=r"unknown search space.*DartsSpace"):
        space_from_config({"name": "Nope"})
    with pytest.raises(ValueError, match=r"unknown genotype 'DARTS_V9'.*DARTS_V2, PADDLESLIM_DARTS_V2"):
        get_space("DartsSpace", genotype="DARTS_V9")


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([5] * 19, r"expected 20 tokens for DartsSpace, got 19"),
        ([5] * 21, r"expected 20 tokens for DartsSpace, got 21"),
        ([5] * 19 + [14], r"position 19 is 14, expected an integer in \[0, 13\]"),
        ([5] * 3 + [-1] + [5] * 16, r"position 3 is -1, expected an integer in \[0, 13\]"),
        ([5] * 7 + [2.5] + [5] * 12, r"position 7 is 2.5 \(float\), expected an integer in \[0, 13\]"),
        ([5.0] * 20, r"position 0 is 5.0 \(float\)"),
        ([5] * 10 + ["5"] + [5] * 9, r"position 10 is '5' \(str\)"),
        ([True] + [5] * 19, r"position 0 is True \(bool\)"),
        ("5" * 20, r"tokens must be a sequence of 20 integers, got '5+' \(str\)"),
        (None, r"tokens must be a sequence of 20 integers, got None"),
        (5, r"tokens must be a sequence of 20 integers, got 5 \(int\)"),
    ],
)
def test_bad_tokens_name_position_value_and_range(tokens, message):
    space = get_space("DartsSpace")
    for call in (space.validate, space.count_params, space.count_macs, space.widths, space.token2arch):
        with pytest.raises(ValueError, match=message):
            call(tokens)


def test_array_tokens_are_accepted():
    space = get_space("DartsSpace")
    init = space.init_tokens()
    assert space.validate(np.array(init)) == init
    assert space.validate(torch.tensor(init)) == init
    assert space.validate(tuple(np.int64(t) for t in init)) == init
    with pytest.raises(ValueError, match=r"position 0 is 5\.0"):
        space.validate(np.array(init, dtype=float))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"layers": 2}, r"layers is 2, expected at least 3"),
        ({"layers": 0}, r"layers is 0, expected a positive integer"),
        ({"filter_num": [8, 4]}, r"strictly ascending"),
        ({"filter_num": []}, r"filter_num is empty"),
        ({"filter_num": [4, "8"]}, r"filter_num entry is '8', expected a positive integer"),
        ({"init_channels": 10}, r"init width 10 of cell 0 .* not in filter_num"),
        ({"init_tokens": [1, 2]}, r"expected 20 tokens"),
        ({"num_classes": -3}, r"num_classes is -3"),
    ],
)
def test_bad_space_config(config, message):
    with pytest.raises(ValueError, match=message):
        get_space("DartsSpace", **config)


def test_configs_form_errors():
    with pytest.raises(ValueError, match="settings given twice: layers"):
        get_space([("DartsSpace", {"layers": 5})], layers=6)
    with pytest.raises(ValueError, match="configs must be"):
        get_space([("DartsSpace",), ("DartsSpace",)])
    with pytest.raises(ValueError, match="is not a space name"):
        get_space([42])

