"""sanas: compress a CNN by searching its per-cell channel counts with simulated annealing.

>>> from sanas import get_space
>>> space = get_space("DartsSpace")
>>> space.count_params(space.init_tokens())
3767302
"""

from sanas.spaces import DartsSpace, SearchSpace, get_space, register_space, space_from_config

__version__ = "0.1.0"

__all__ = ["DartsSpace", "SearchSpace", "get_space", "register_space", "space_from_config"]
