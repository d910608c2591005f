"""Every entry of the DARTS op table: its parameter and MAC formulas agree with the module it builds."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sanas.network.operations import (
    OPS,
    FactorizedReduce,
    ReLUConvBN,
    factorized_reduce_macs,
    factorized_reduce_params,
    out_size,
    relu_conv_bn_params,
)

# Even and odd widths and input sizes, square and not: the formulas must hold for all of them.
WIDTHS = [4, 5, 8, 12]
SIZES = [(8, 8), (7, 9), (1, 1), (6, 11)]


def _measure(module: torch.nn.Module, c: int, h: int, w: int) -> tuple[int, torch.Size]:
    """Conv/linear MACs (FlopCounterMode's FLOPs, halved) and the output shape of one forward pass."""
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = module(torch.randn(2, c, h, w, device="meta"))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 4, out.shape  # a batch of 2: per-image MACs = FLOPs / 2 / 2


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_formulas_match_built_module(name: str, stride: int) -> None:
    spec = OPS[name]
    for c in WIDTHS:
        with torch.device("meta"):  # shapes and counts only: no memory, no arithmetic
            module = spec.build(c, stride)
        assert spec.params(c, stride) == sum(p.numel() for p in module.parameters()), (name, stride, c)
        assert all(p.requires_grad for p in module.parameters())
        for h, w in SIZES:
            macs, shape = _measure(module, c, h, w)
            assert shape == (2, c, out_size(h, stride), out_size(w, stride)), (name, stride, c, h, w)
            assert spec.macs(c, stride, h, w) == macs, (name, stride, c, h, w)


def test_table_holds_the_darts_ops() -> None:
    # The eight DARTS search ops plus the two extra convs of the original table; a new entry is tested above.
    assert set(OPS) == {"none", "avg_pool_3x3", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                        "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5", "conv_7x1_1x7"}


@pytest.mark.parametrize(("c_in", "c_out"), [(4, 8), (8, 4), (6, 5), (12, 12)])
def test_preprocess_formulas_match_built_modules(c_in: int, c_out: int) -> None:
    with torch.device("meta"):
        fr = FactorizedReduce(c_in, c_out)
    assert factorized_reduce_params(c_in, c_out) == sum(p.numel() for p in fr.parameters())
    preprocess = ReLUConvBN(c_in, c_out, 1, 1, 0)
    assert relu_conv_bn_params(c_in, c_out) == sum(p.numel() for p in preprocess.parameters())
    for h, w in SIZES:
        macs, shape = _measure(fr, c_in, h, w)
        assert shape == (2, c_out, out_size(h, 2), out_size(w, 2))
        assert factorized_reduce_macs(c_in, c_out, h, w) == macs, (c_in, c_out, h, w)
