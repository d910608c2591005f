"""The search: simulated annealing (and baselines) over a space's tokens, on an Optuna study.

* :mod:`sanas.search.chain` — the SA chain as a pure function of finished evaluations (:func:`replay_chain`).
* :mod:`sanas.search.samplers` — Optuna samplers over tokens: SA, random, regularized evolution, any Optuna sampler;
  :data:`SAMPLERS`, the registry of their names.
* :mod:`sanas.search.storage` — run directory, database URL or gRPC server: where the study lives.
* :mod:`sanas.search.api` — :class:`SANAS`, PaddleSlim's API on top.
"""

from sanas.search.api import SANAS
from sanas.search.chain import ChainState, ChainStep, Evaluation, acceptance_draw, evaluations, replay_chain
from sanas.search.samplers import (
    SAMPLERS,
    OptunaTokenSampler,
    RandomTokenSampler,
    RegularizedEvolutionSampler,
    SearchExhausted,
    SimulatedAnnealingSampler,
    TokenSampler,
    make_sampler,
)
from sanas.search.storage import StorageUnavailable

__all__ = [
    "SAMPLERS",
    "SANAS",
    "ChainState",
    "ChainStep",
    "Evaluation",
    "OptunaTokenSampler",
    "RandomTokenSampler",
    "RegularizedEvolutionSampler",
    "SearchExhausted",
    "SimulatedAnnealingSampler",
    "StorageUnavailable",
    "TokenSampler",
    "acceptance_draw",
    "evaluations",
    "make_sampler",
    "replay_chain",
]
