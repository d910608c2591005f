"""sanas: compress a CNN by searching its per-cell channel counts with simulated annealing.

>>> from sanas import get_space
>>> space = get_space("DartsSpace")
>>> space.count_params(space.init_tokens())
3767302

``SANAS`` (the search, on Optuna) and ``evaluate_candidate`` (training) are imported on first use, so
``import sanas`` for spaces and counting stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sanas.spaces import DartsSpace, SearchSpace, get_space, inherit, register_space, space_from_config

if TYPE_CHECKING:
    from sanas.runs.compress import Compressed, compress
    from sanas.search import SANAS, SimulatedAnnealingSampler
    from sanas.training import Recipe, evaluate_candidate, load_model, prepare_data, train_final

__version__ = "0.1.0"

_LAZY = {"SANAS": "sanas.search", "SimulatedAnnealingSampler": "sanas.search", "Recipe": "sanas.training",
         "compress": "sanas.runs.compress", "Compressed": "sanas.runs.compress",
         "evaluate_candidate": "sanas.training", "load_model": "sanas.training", "prepare_data": "sanas.training",
         "train_final": "sanas.training"}

__all__ = ["SANAS", "Compressed", "DartsSpace", "Recipe", "SearchSpace", "SimulatedAnnealingSampler", "compress",
           "evaluate_candidate", "get_space", "inherit", "load_model", "prepare_data", "register_space",
           "space_from_config", "train_final"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sanas' has no attribute {name!r}")
