"""The network: DARTS operations, genotypes as data, cells and the per-cell-width DARTS network."""

from sanas.network.genotypes import GENOTYPES, Genotype, get_genotype
from sanas.network.model import DartsNetwork, NetworkCounts, network_counts, reduction_layers
from sanas.network.operations import OPS

__all__ = ["GENOTYPES", "OPS", "DartsNetwork", "Genotype", "NetworkCounts", "get_genotype", "network_counts",
           "reduction_layers"]
