"""Cell architectures as data, in the DARTS ``Genotype`` notation.

Each cell has four intermediate nodes; node ``i`` sums two ops, listed as ``(op name, input)`` pairs in
``normal``/``reduce`` (entries ``2i`` and ``2i + 1``). Input 0 is the cell's first input (``s0``), input 1 its
second (``s1``), input ``j >= 2`` node ``j - 2``. The cell outputs the concatenation of ``*_concat``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GENOTYPES", "Genotype", "get_genotype"]


class Genotype(NamedTuple):
    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


#: PaddleSlim's DartsSpace cell (the architecture PaddleSlim's model zoo compresses; 3,767,302 parameters
#: at the init widths). It differs from the paper's DARTS_V2.
PADDLESLIM_DARTS_V2 = Genotype(
    normal=[("dil_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("skip_connect", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
            ("skip_connect", 2), ("dil_conv_5x5", 3), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)

#: The DARTS paper's second-order cell (Liu et al. 2019); 3,349,342 parameters at the init widths.
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)

GENOTYPES: dict[str, Genotype] = {"PADDLESLIM_DARTS_V2": PADDLESLIM_DARTS_V2, "DARTS_V2": DARTS_V2}


def get_genotype(name: str) -> Genotype:
    """Return the genotype registered as ``name``.

    >>> get_genotype("DARTS_V2").normal_concat
    [2, 3, 4, 5]
    """
    try:
        return GENOTYPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown genotype {name!r}; known genotypes: {', '.join(sorted(GENOTYPES))}") from None
