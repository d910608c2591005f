"""The channel-group algebra: which group each position of a tensor's channel dimension belongs to.

A :class:`Label` describes one dimension of one tensor as :class:`Run`\\ s of groups; :class:`Groups` is the
union-find that couples groups (channel ``j`` of one is channel ``j`` of the other) and freezes them, with the
reason; :class:`ChannelGroup` is a finished group as :func:`~sanas.spaces.channels.trace_channels` reports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """``channels`` consecutive channels of group ``group`` (``None``: channels no search changes), each filling
    ``repeat`` consecutive positions."""

    group: int | None
    channels: int
    repeat: int = 1


@dataclass(frozen=True)
class Label:
    """The channel dimension ``dim`` of a tensor, as runs of groups."""

    dim: int
    runs: tuple[Run, ...]

    def groups(self) -> Iterator[int]:
        return (r.group for r in self.runs if r.group is not None)

    def at(self, dim: int) -> Label:
        return Label(dim, self.runs)


@dataclass
class ChannelGroup:
    """A set of channels that must be kept or dropped together, everywhere it appears.

    ``width`` is the trained width; ``producers`` the layers whose outputs are these channels (several when a
    residual ``add`` couples them); ``kind`` what those layers are and ``resolutions`` the feature-map sizes the
    channels appear at
    (what :class:`~sanas.spaces.model.ModelSpace` uses to tie repeating groups into stages).
    """

    width: int
    producers: list[str]
    kind: tuple[str, ...]
    resolutions: tuple[tuple[int, ...], ...]

    @property
    def name(self) -> str:
        extra = len(self.producers) - 1
        return self.producers[0] + (f" (+{extra} coupled)" if extra else "")


class Groups:
    """Union-find over channel groups; two groups are united when channel ``j`` of one is channel ``j`` of the
    other. A group can be frozen, with the reason (the first one is kept)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.width: list[int] = []
        self.frozen: list[str | None] = []
        self.producers: list[list[str]] = []
        self.kinds: list[set[str]] = []
        self.resolutions: list[set[tuple[int, ...]]] = []

    def new(self, width: int, producer: str, kind: str, resolution: tuple[int, ...]) -> int:
        self.parent.append(len(self.parent))
        self.width.append(width)
        self.frozen.append(None)
        self.producers.append([producer])
        self.kinds.append({kind})
        self.resolutions.append({resolution})
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def freeze(self, g: int, reason: str) -> None:
        root = self.find(g)
        if self.frozen[root] is None:
            self.frozen[root] = reason

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.width[ra] != self.width[rb]:  # cannot happen for aligned runs; never guess
            self.freeze(ra, "coupled to a group of another width")
            self.freeze(rb, "coupled to a group of another width")
            return
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.frozen[ra] = self.frozen[ra] or self.frozen[rb]
        self.producers[ra] += self.producers[rb]
        self.kinds[ra] |= self.kinds[rb]
        self.resolutions[ra] |= self.resolutions[rb]
