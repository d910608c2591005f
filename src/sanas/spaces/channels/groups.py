"""The channel-group algebra: which group each position of a tensor's channel dimension belongs to.

A :class:`Label` describes one dimension of one tensor as :class:`Run`\\ s of groups; :class:`Groups` is the
union-find that couples groups (channel ``j`` of one is channel ``j`` of the other) and freezes them, with the
reason; :class:`ChannelGroup` is a finished group as :func:`~sanas.spaces.channels.trace_channels` reports it.

A group can also be *refined* (:meth:`Groups.refine`): replaced by runs of new groups, when an op shows that its
channels need not all shrink together but must line up with another label's runs. A residual ``add`` of a conv's
16 channels with a ghost module's ``[P: 8, P: 8]`` (a conv's 8 channels and their cheap copies) cuts the conv's
group into two of 8 channels, each coupled with ``P``; an op that pairs channel ``2j`` and ``2j + 1`` of one group
with channel ``j`` of another (a channel shuffle) makes the first a group of channel pairs. A refined group is no
longer a group itself: every label reads through it (:meth:`Groups.resolve`) to its parts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
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
        #: A refined root -> the runs of new groups it is made of (their channels × repeats sum to its width).
        self.parts: dict[int, tuple[Run, ...]] = {}

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

    def is_leaf(self, g: int) -> bool:
        """Whether ``g`` is a group of the result: a root that is not refined."""
        return self.find(g) == g and g not in self.parts

    def freeze(self, g: int, reason: str) -> None:
        root = self.find(g)
        if root in self.parts:
            for part in self.parts[root]:
                self.freeze(part.group, reason)  # type: ignore[arg-type]
        elif self.frozen[root] is None:
            self.frozen[root] = reason

    def resolve(self, runs: Iterable[Run]) -> tuple[Run, ...]:
        """The same positions as runs of unrefined roots."""
        out: list[Run] = []
        for run in runs:
            root = self.find(run.group) if run.group is not None else None
            if root is None:
                out.append(run)
            elif root in self.parts:
                out += self.resolve(Run(p.group, p.channels, p.repeat * run.repeat) for p in self.parts[root])
            else:
                out.append(Run(root, run.channels, run.repeat))
        return tuple(out)

    def refine(self, g: int, parts: list[tuple[int, int, str]]) -> None:
        """Replace the root of ``g`` by new groups: ``(channels, repeat, name suffix)`` each, in channel order
        (channels × repeat summing to its width). What the root was (frozen, producers...) its parts are too."""
        root = self.find(g)
        assert root not in self.parts and sum(c * r for c, r, _ in parts) == self.width[root]
        runs = []
        for channels, repeat, suffix in parts:
            new = self.new(channels, "", "", ())
            self.frozen[new] = self.frozen[root]
            self.producers[new] = [p + suffix for p in self.producers[root]]
            self.kinds[new] = set(self.kinds[root])
            self.resolutions[new] = set(self.resolutions[root])
            runs.append(Run(new, channels, repeat))
        self.parts[root] = tuple(runs)

    def align(self, a: Iterable[Run], b: Iterable[Run]) -> str:
        """Couple two run sequences position by position (channel ``j`` of one is channel ``j`` of the other),
        refining groups where their runs do not line up: ``""`` when done, else why they cannot be (unions made
        on the way are kept; the caller freezes both)."""
        qa, qb = deque(a), deque(b)
        while qa and qb:
            x, y = self.resolve([qa[0]]), self.resolve([qb[0]])
            if len(x) > 1 or x[0] != qa[0] or len(y) > 1 or y[0] != qb[0]:  # a group refined on the way
                qa.popleft(), qb.popleft()
                qa.extendleft(reversed(x)), qb.extendleft(reversed(y))
                continue
            x, y = qa[0], qb[0]
            lx, ly = x.channels * x.repeat, y.channels * y.repeat
            if lx != ly:  # cut the longer run where the shorter one ends
                (q, run, at) = (qa, x, ly) if lx > ly else (qb, y, lx)
                if at % run.repeat:
                    return "cuts a channel's repeated positions"
                k = at // run.repeat
                if run.group is None:
                    q.popleft()
                    q.extendleft([Run(None, run.channels - k, run.repeat), Run(None, k, run.repeat)])
                else:
                    self.refine(run.group, [(k, 1, f"[:{k}]"), (run.channels - k, 1, f"[{k}:]")])
                continue
            if x.repeat != y.repeat:  # channels of the finer run shrink in units of the coarser one's repeat
                run, other = (x, y) if x.repeat < y.repeat else (y, x)
                f = other.repeat // run.repeat
                if other.repeat % run.repeat or run.channels % f or run.group is None:
                    return "pairs channels that repeat differently"
                self.refine(run.group, [(run.channels // f, f, f"[{f} by {f}]")])
                continue
            qa.popleft(), qb.popleft()
            if x.group is None and y.group is None:
                continue
            if x.group is None or y.group is None:
                return "fixed"
            self.union(x.group, y.group)
        return "" if not qa and not qb else "has runs of another length"

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
