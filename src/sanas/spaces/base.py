"""The search-space interface and its registry: spaces by name, as in PaddleSlim's ``configs=[...]``."""

from __future__ import annotations

import hashlib
import json
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from sanas.spaces.inherit import DEFAULT_IMPORTANCE, IMPORTANCE

__all__ = ["DEFAULT_SPACE", "SPACES", "CellWidthSpace", "Part", "SearchSpace", "get_space", "positive_int",
           "register_space", "space_from_config", "tag_network", "uniform_tokens"]


@dataclass(frozen=True)
class Part:
    """One part of a network (stem, cell, classifier...) with its exact counts, as :meth:`SearchSpace.parts`
    reports it. ``counted=False`` marks a part left out of the space's parameter count (DARTS' auxiliary head,
    used in training only)."""

    name: str
    kind: str
    width: int | None
    params: int
    macs: int
    counted: bool = True


class SearchSpace(ABC):
    """A discrete space of token vectors, each naming one architecture.

    ``tokens[i]`` lies in ``range(range_table()[i])``. Subclasses define the mapping to networks and the
    analytic counts; this base class gives validation, a JSON config and a fingerprint of it.
    """

    #: Registry name of the space (set by :func:`register_space`).
    name: str = ""

    @abstractmethod
    def init_tokens(self) -> list[int]:
        """The tokens of the original (uncompressed) architecture."""

    @abstractmethod
    def range_table(self) -> list[int]:
        """Exclusive upper bound of each token position."""

    @abstractmethod
    def token2arch(self, tokens: Sequence[int]) -> nn.Module:
        """Build the network named by ``tokens``."""

    @abstractmethod
    def count_params(self, tokens: Sequence[int]) -> int:
        """Trainable parameters of ``token2arch(tokens)``, computed without building it."""

    @abstractmethod
    def count_macs(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> int:
        """Forward multiply-accumulates for one image of ``input_size``, computed without building it."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Every setting needed to rebuild this space, JSON-serialisable, including ``"name"``."""

    #: Which channels a narrower child keeps where the caller names no criterion (``Recipe.importance=None``):
    #: ``"bn"`` (largest BatchNorm |γ|), ``"l1"`` (largest filter L1 norms) or ``"group_l2"`` (largest sum of
    #: squares of every weight the channel holds across its group), chosen per space from measurements
    #: (README, "Compress a trained model").
    default_importance: str = DEFAULT_IMPORTANCE

    def resolve_importance(self, importance: str | None) -> str:
        """The channel criterion a child of this space keeps its channels by: ``importance``, or
        :attr:`default_importance` where it is ``None``. Every ``inherit`` resolves its argument here, and so do
        the trainer and :func:`sanas.inherit`, so that one attribute decides for all of them.

        >>> from sanas import get_space
        >>> space = get_space("PlainCNNSpace")
        >>> space.resolve_importance(None), space.resolve_importance("l1")
        ('bn', 'l1')
        >>> space.resolve_importance("l2")
        Traceback (most recent call last):
        ...
        ValueError: importance is 'l2', expected one of bn, l1, group_l2
        """
        chosen = self.default_importance if importance is None else importance
        if chosen not in IMPORTANCE:
            raise ValueError(f"importance is {chosen!r}, expected one of {', '.join(IMPORTANCE)}")
        return chosen

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str | None = None) -> nn.Module:
        """The network for ``tokens`` with weights taken from the trained ``parent`` (see :mod:`sanas.spaces.inherit`);
        a narrower group keeps its most important channels by ``importance`` (:meth:`resolve_importance`).

        Spaces that know where every channel of their networks goes override this; the default refuses.
        """
        raise NotImplementedError(f"{self.name or type(self).__name__} cannot build a child from a trained parent "
                                  f"(no weight inheritance for this space); use the scratch evaluation")

    def token_widths(self) -> list[list[int]]:
        """The width choices of each token, narrow to wide (what a uniform ratio scales); spaces whose tokens are
        not widths raise ``NotImplementedError``."""
        raise NotImplementedError(f"{self.name}'s tokens are not channel widths: it has no uniform-width child")

    def uniform_child(self, max_params: int) -> tuple[SearchSpace, list[int]]:
        """The uniform-width child at ``max_params`` parameters, and the space that holds its widths: every width
        the init tokens' scaled by one ratio, the largest that fits — the trivial answer a width search has to beat
        (``sanas train --uniform``). Build, train, save and inherit the child with the returned space: its
        :meth:`config` is what the child's ``model.json`` records.

        Here the ratio snaps to this space's own width choices (:func:`uniform_tokens`) and the space is this one;
        :class:`~sanas.spaces.ModelSpace` bisects the ratio to the channel instead, in a finer-grid copy of itself,
        as Torch-Pruning's uniform pruning does. Spaces whose tokens are not widths raise ``NotImplementedError``.

        >>> from sanas import get_space
        >>> space = get_space("DartsSpace", layers=5, filter_num=[4, 8, 12, 16, 24, 32, 48, 64], init_channels=8)
        >>> child_space, tokens = space.uniform_child(30000)
        >>> child_space is space, space.widths(tokens), space.count_params(tokens) <= 30000
        (True, [4, 12, 12, 24, 24], True)
        """
        return self, uniform_tokens(self, max_params)

    def parts(self, tokens: Sequence[int], input_size: tuple[int, int] = (32, 32)) -> list[Part] | None:
        """The network of ``tokens`` part by part, in order, with exact counts (the counted parts sum to
        :meth:`count_params` and :meth:`count_macs`): what ``sanas info`` and ``sanas export`` tabulate. ``None``
        (the default) when the space reports totals only."""
        return None

    def trained_parent(self) -> nn.Module | None:
        """The trained network this space was made from, when it holds one (:class:`~sanas.spaces.ModelSpace`):
        the parent of an inherit search that names no other. ``None`` for spaces that describe architectures."""
        return None

    def validate(self, tokens: object) -> list[int]:
        """Return ``tokens`` as a list of ints, or raise ``ValueError`` saying what is wrong and where.

        >>> from sanas import get_space
        >>> get_space("DartsSpace", layers=5, filter_num=[4, 8, 16, 32], init_channels=8).validate([1, 2, 3, 0, 20])
        Traceback (most recent call last):
        ...
        ValueError: token at position 4 is 20, expected an integer in [0, 3]
        """
        ranges = self.range_table()
        if hasattr(tokens, "tolist"):  # numpy arrays and torch tensors
            tokens = tokens.tolist()
        if isinstance(tokens, str | bytes) or not isinstance(tokens, Sequence):
            raise ValueError(f"tokens must be a sequence of {len(ranges)} integers, got {tokens!r} "
                             f"({type(tokens).__name__})")
        if len(tokens) != len(ranges):
            raise ValueError(f"expected {len(ranges)} tokens for {self.name}, got {len(tokens)}")
        out = []
        for i, (value, bound) in enumerate(zip(tokens, ranges, strict=True)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"token at position {i} is {value!r} ({type(value).__name__}), "
                                 f"expected an integer in [0, {bound - 1}]")
            if not 0 <= value < bound:
                raise ValueError(f"token at position {i} is {value}, expected an integer in [0, {bound - 1}]")
            out.append(int(value))
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`config`: equal fingerprints mean the same space."""
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({settings})"


def tag_network(net: nn.Module, space: SearchSpace, tokens: Sequence[int]) -> nn.Module:
    """Record on ``net`` the space and tokens it was built from, so ``sanas.inherit(net, ...)`` can find them."""
    net.sanas_space = space
    net.sanas_tokens = list(tokens)
    return net


def positive_int(what: str, value: object) -> int:
    """``value`` if it is a positive ``int``, else a ``ValueError`` naming ``what`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} is {value!r}, expected a positive integer")
    return value


class CellWidthSpace(SearchSpace):
    """A space with one token per cell, each picking the cell's width from the same ``filter_num`` list.

    Subclasses call :meth:`_set_cells` in ``__init__`` and set ``self._init_tokens``.
    """

    filter_num: list[int]
    layers: int
    _init_tokens: list[int]

    def _set_cells(self, filter_num: Sequence[int], layers: object) -> None:
        self.filter_num = [positive_int("filter_num entry", f) for f in filter_num]
        if not self.filter_num:
            raise ValueError("filter_num is empty, expected at least one width")
        if sorted(set(self.filter_num)) != self.filter_num:
            raise ValueError(f"filter_num {self.filter_num} must be strictly ascending")
        self.layers = positive_int("layers", layers)
        if self.layers < 3:
            raise ValueError(f"layers is {layers}, expected at least 3 (two reduction cells and a normal one)")

    def init_tokens(self) -> list[int]:
        return list(self._init_tokens)

    def range_table(self) -> list[int]:
        return [len(self.filter_num)] * self.layers

    def widths(self, tokens: Sequence[int]) -> list[int]:
        """Channel width of each cell."""
        return [self.filter_num[t] for t in self.validate(tokens)]

    def token_widths(self) -> list[list[int]]:
        return [list(self.filter_num) for _ in range(self.layers)]


def uniform_tokens(space: SearchSpace, max_params: int) -> list[int]:
    """The uniform-width child: every token's width scaled by one ratio ``r`` of the init tokens' widths (each
    the widest choice not above ``r`` × its init width, the narrowest at least), ``r`` the largest whose network
    has at most ``max_params`` parameters, on the space's own width choices. :meth:`SearchSpace.uniform_child` is
    the uniform-width child to compare a search with (for most spaces these tokens; a ModelSpace's ratio grid
    would leave it short of the budget, and it bisects its ratio to the channel instead).

    >>> from sanas.spaces import get_space
    >>> space = get_space("DartsSpace", layers=5, filter_num=[4, 8, 12, 16, 24, 32, 48, 64], init_channels=8)
    >>> space.widths(space.init_tokens()), space.widths(uniform_tokens(space, 30000))
    ([8, 16, 16, 32, 32], [4, 12, 12, 24, 24])
    """
    choices, init = space.token_widths(), space.init_tokens()
    base = [c[t] for c, t in zip(choices, init, strict=True)]

    def at(r: float) -> list[int]:
        return [max([j for j, w in enumerate(c) if w <= r * b] or [0]) for c, b in zip(choices, base, strict=True)]

    if space.count_params(at(0.0)) > max_params:
        raise ValueError(f"max_params is {max_params:,}, below the narrowest uniform child of {space.name} "
                         f"({space.count_params(at(0.0)):,} parameters)")
    lo, hi = 0.0, max(max(c) / b for c, b in zip(choices, base, strict=True))
    if space.count_params(at(hi)) <= max_params:
        return at(hi)
    for _ in range(50):  # the count is a step function of r: bisect to well below the narrowest step
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if space.count_params(at(mid)) <= max_params else (lo, mid)
    return at(lo)


SPACES: dict[str, Callable[..., SearchSpace]] = {}
#: The space of a search (config, CLI) that names none: PaddleSlim's demo.
DEFAULT_SPACE = "DartsSpace"


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: make ``cls`` available to :func:`get_space` under its class name."""
    cls.name = cls.__name__
    SPACES[cls.__name__] = cls
    return cls


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown search space {name!r}; known spaces: {', '.join(sorted(SPACES))}")


def get_space(configs: str | Sequence[Any], **config: Any) -> SearchSpace:
    """Make a search space by name, or from PaddleSlim's ``configs`` list.

    All of these give the same 5-cell space::

        get_space("DartsSpace", layers=5)
        get_space([("DartsSpace", {"layers": 5})])
        get_space(["DartsSpace"], layers=5)       # PaddleSlim's [('DartsSpace')] is just ['DartsSpace']

    >>> get_space("DartsSpace").count_params(get_space("DartsSpace").init_tokens())
    3767302
    """
    if isinstance(configs, SearchSpace):
        if config:
            raise ValueError("settings cannot be applied to an already built search space")
        return configs
    if not isinstance(configs, str):
        if isinstance(configs, Sequence) and len(configs) == 1:
            entry = configs[0]
            if isinstance(entry, str):
                configs = entry
            elif isinstance(entry, Sequence) and len(entry) in (1, 2) and isinstance(entry[0], str):
                extra = dict(entry[1]) if len(entry) == 2 else {}
                overlap = set(extra) & set(config)
                if overlap:
                    raise ValueError(f"settings given twice: {', '.join(sorted(overlap))}")
                return get_space(entry[0], **extra, **config)
            else:
                raise ValueError(f"configs entry {entry!r} is not a space name or (name, settings) pair")
        else:
            raise ValueError(f"configs must be a space name or a list of one (name, settings) entry, "
                             f"got {configs!r}")
    if configs not in SPACES:
        raise _unknown(configs)
    return SPACES[configs](**config)


def space_from_config(config: dict[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.config` output."""
    settings = dict(config)
    name = settings.pop("name", None)
    if name not in SPACES:
        raise _unknown(name)
    return SPACES[name](**settings)
