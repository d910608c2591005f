"""Search spaces: tokens ↔ widths ↔ networks, with analytic parameter and MAC counts."""

from sanas.spaces.base import SPACES, SearchSpace, get_space, register_space, space_from_config
from sanas.spaces.cnn import PlainCNN, PlainCNNSpace
from sanas.spaces.darts import DEFAULT_FILTER_NUM, DartsSpace
from sanas.spaces.inherit import inherit

__all__ = ["DEFAULT_FILTER_NUM", "SPACES", "DartsSpace", "PlainCNN", "PlainCNNSpace", "SearchSpace", "get_space",
           "inherit", "register_space", "space_from_config"]
