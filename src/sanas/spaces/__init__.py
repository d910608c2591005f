"""Search spaces: tokens ↔ widths ↔ networks, with analytic parameter and MAC counts."""

from sanas.spaces.base import (
    DEFAULT_SPACE,
    SPACES,
    SearchSpace,
    get_space,
    register_space,
    space_from_config,
    uniform_tokens,
)
from sanas.spaces.cnn import PlainCNN, PlainCNNSpace
from sanas.spaces.darts import DEFAULT_FILTER_NUM, DartsSpace
from sanas.spaces.inherit import inherit
from sanas.spaces.mobilenet import MobileNetV1Space, MobileNetV2Space
from sanas.spaces.model import ModelSpace
from sanas.spaces.resnet import ResNetSpace

__all__ = ["DEFAULT_FILTER_NUM", "DEFAULT_SPACE", "SPACES", "DartsSpace", "MobileNetV1Space", "MobileNetV2Space",
           "ModelSpace", "PlainCNN", "PlainCNNSpace", "ResNetSpace", "SearchSpace", "get_space", "inherit",
           "register_space", "space_from_config", "uniform_tokens"]
