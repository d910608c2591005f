"""Children from a trained parent: the same network at other widths, starting from the parent's weights.

A network's channels fall into *groups*: every tensor dimension indexed by cell ``k``'s channels (its convs'
outputs, its BatchNorms, the inputs of the convs that read it, the slices of the next cells' inputs that hold
its concatenated nodes) must be cut or grown with the same channel list. A space describes where each group
appears in its network's state dict (a :data:`Layout`); :func:`inherit_state` then builds the child's state:

* **Narrower group** — keep the parent's ``C'`` most important channels (:func:`channel_importance`: ``"bn"``,
  each BatchNorm's ``|γ|`` over its mean, summed over the group's BatchNorms; ``"l1"``, the same with the
  L1 norms of the convs' (and linear layers') output filters; a group without BatchNorm falls back to
  ``"l1"``; or ``"group_l2"``, every weight of the channel across the whole group — the producing filters,
  the BatchNorm ``γ``, the slices of the layers that read it — squared and summed), in the parent's order,
  everywhere the group appears.
* **Wider group** — Net2Net (Chen et al. 2016): keep every parent channel and add replicas of the most
  important ones; a layer that *reads* the group (a 1×1 conv, the classifier) gives each replica a share of the
  original input weight, the shares of one channel summing to one. Replicas compute the same activations, so
  the child computes exactly the parent's function (eval mode) before any training. The shares are unequal
  (seeded), which breaks the replicas' symmetry so fine-tuning can tell them apart.

FactorizedReduce splits its output between two convs (the first ``C // 2`` channels, then the rest); a group
produced by one keeps that split: ``C' // 2`` of the child's channels come from the parent's first half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DEFAULT_IMPORTANCE", "IMPORTANCE", "DimSpec", "Layout", "Segment", "channel_importance", "group_spec",
           "inherit", "inherit_state", "select_channels"]

#: Importance criteria for choosing the channels a narrower child keeps.
IMPORTANCE = ("bn", "l1", "group_l2")
#: The criterion of a space's ``inherit`` where none is given (its ``default_importance``), except ``ModelSpace``'s:
#: see :attr:`sanas.spaces.SearchSpace.default_importance`.
DEFAULT_IMPORTANCE = "bn"


@dataclass(frozen=True)
class Segment:
    """A run of one tensor dimension: channel group ``group`` (``half`` 0/1: only the first or second half of
    its channels, as a FactorizedReduce conv produces), or ``size`` channels that no search changes.

    ``repeat``: each of the group's channels fills that many consecutive positions (a C×H×W map flattened for a
    linear layer reads every channel H·W times)."""

    group: int | None = None
    half: int | None = None
    size: int = 0
    repeat: int = 1


@dataclass(frozen=True)
class DimSpec:
    """How one dimension of a tensor is indexed: its segments in order, and whether the tensor *reads* the
    channels along it (the input dimension of a conv or linear layer, where replicas share the weight)."""

    segments: tuple[Segment, ...]
    reads: bool = False


#: Parameter or buffer name → {dimension → spec}. Tensors (and dimensions) not listed are copied as they are.
Layout = dict[str, dict[int, DimSpec]]


def group_spec(group: int, half: int | None = None, reads: bool = False) -> DimSpec:
    """A dimension holding exactly one group's channels (or one half of them)."""
    return DimSpec((Segment(group, half),), reads)


def _half_bounds(width: int, half: int | None) -> tuple[int, int]:
    if half is None:
        return 0, width
    return (0, width // 2) if half == 0 else (width // 2, width)


def _pick(importance: torch.Tensor, n_child: int) -> torch.Tensor:
    """Indices (into ``importance``) of the ``n_child`` channels to keep or replicate, in the child's order."""
    n_parent = len(importance)
    order = torch.sort(importance, descending=True, stable=True).indices
    if n_child <= n_parent:
        return torch.sort(order[:n_child]).values
    extra = order[torch.arange(n_child - n_parent) % n_parent]
    return torch.cat([torch.arange(n_parent), extra])


def select_channels(importance: torch.Tensor, n_child: int, halved: bool) -> torch.Tensor:
    """For each of a child group's ``n_child`` channels, the parent channel it comes from.

    Narrower: the most important parent channels, in the parent's order. Wider: every parent channel, then
    replicas of the most important ones. ``halved`` keeps a FactorizedReduce's split (see the module docstring).

    >>> select_channels(torch.tensor([0.1, 0.9, 0.5, 0.2]), 2, halved=False).tolist()
    [1, 2]
    >>> select_channels(torch.tensor([0.1, 0.9, 0.5, 0.2]), 2, halved=True).tolist()
    [1, 2]
    >>> select_channels(torch.tensor([0.1, 0.9, 0.5, 0.2]), 6, halved=False).tolist()
    [0, 1, 2, 3, 1, 2]
    """
    n_parent = len(importance)
    if not halved:
        return _pick(importance, n_child)
    first = _pick(importance[: n_parent // 2], n_child // 2)
    second = _pick(importance[n_parent // 2:], n_child - n_child // 2) + n_parent // 2
    return torch.cat([first, second])


def _shares(index: torch.Tensor, n_parent: int, generator: torch.Generator) -> torch.Tensor:
    """Each child channel's share of its parent channel's outgoing weights; a channel's shares sum to one.

    Channels kept once get exactly 1; replicas get seeded unequal shares (symmetry breaking)."""
    counts = torch.bincount(index, minlength=n_parent)
    weights = torch.ones(len(index), dtype=torch.float64)
    replicated = counts[index] > 1
    if replicated.any():
        weights[replicated] = 0.5 + torch.rand(int(replicated.sum()), generator=generator, dtype=torch.float64)
    totals = torch.zeros(n_parent, dtype=torch.float64).index_add_(0, index, weights)
    return weights / totals[index]


def _halved_groups(layout: Layout) -> set[int]:
    return {seg.group for dims in layout.values() for spec in dims.values() for seg in spec.segments
            if seg.group is not None and seg.half is not None}


def channel_importance(state: Mapping[str, torch.Tensor], layout: Layout, widths: Mapping[int, int],
                       kind: str, bn_weights: Sequence[str], conv_weights: Sequence[str]) -> dict[int, torch.Tensor]:
    """Importance of every channel of every group of a trained network (higher = keep).

    ``"bn"``: for every BatchNorm weight ``γ`` listed in ``bn_weights`` whose channels belong to a group,
    ``|γ| / mean |γ|``, summed per channel over the group's BatchNorms. ``"l1"``: the same with the L1 norm of
    each output filter of the convs in ``conv_weights``. Each layer is normalised by its own mean, so no one
    layer's scale decides for the whole group. ``"group_l2"``: every weight that a channel's removal would remove,
    across the group (the group L2 magnitude of Torch-Pruning's ``MagnitudeImportance(p=2)``): in every tensor of
    ``bn_weights`` and ``conv_weights``, along each dimension that holds the group — the filters that produce it,
    ``γ``, the input slices of the layers that read it (all the positions a flattened channel fills) — the sum
    of squares of the channel's weights, summed over the group's tensors without normalisation, so that the
    layers holding most of the channel's weights weigh most.
    """
    if kind not in IMPORTANCE:
        raise ValueError(f"importance is {kind!r}, expected one of {', '.join(IMPORTANCE)}")
    if kind == "group_l2":
        return _group_l2(state, layout, widths, [*bn_weights, *conv_weights])
    names = bn_weights if kind == "bn" else conv_weights
    scores = {g: torch.zeros(w, dtype=torch.float64) for g, w in widths.items()}
    for name in names:
        spec = layout.get(name, {}).get(0)
        if spec is None or spec.reads:
            continue
        t = state[name].detach().to("cpu", torch.float64)
        values = t.abs() if kind == "bn" else t.abs().flatten(1).sum(1)
        values = values / values.mean().clamp_min(1e-12)
        _add_segments(scores, spec, widths, values, "mean")
    return scores


def _add_segments(scores: dict[int, torch.Tensor], spec: DimSpec, widths: Mapping[int, int],
                  values: torch.Tensor, repeats: str) -> None:
    """Add one dimension's per-position ``values`` to the scores of the groups it holds; a channel's ``repeat``
    positions are reduced by ``repeats`` (``"mean"`` or ``"sum"``)."""
    offset = 0
    for seg in spec.segments:
        if seg.group is None:
            offset += seg.size
            continue
        lo, hi = _half_bounds(widths[seg.group], seg.half)
        n = (hi - lo) * seg.repeat
        per_channel = values[offset:offset + n].view(hi - lo, seg.repeat)
        scores[seg.group][lo:hi] += per_channel.mean(1) if repeats == "mean" else per_channel.sum(1)
        offset += n


def _group_l2(state: Mapping[str, torch.Tensor], layout: Layout, widths: Mapping[int, int],
              names: Sequence[str]) -> dict[int, torch.Tensor]:
    scores = {g: torch.zeros(w, dtype=torch.float64) for g, w in widths.items()}
    for name in names:
        t = state[name].detach().to("cpu", torch.float64)
        for dim, spec in layout.get(name, {}).items():
            squares = t.pow(2).movedim(dim, 0).reshape(t.shape[dim], -1).sum(1)
            _add_segments(scores, spec, widths, squares, "sum")
    return scores


def _dim_index(spec: DimSpec, parent_widths: Mapping[int, int], child_widths: Mapping[int, int],
               maps: Mapping[int, torch.Tensor], shares: Mapping[int, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                            torch.Tensor | None]:
    """Parent indices along one dimension for every child position, and the read shares (``None``: all 1)."""
    parts, scale, offset = [], [], 0
    for seg in spec.segments:
        if seg.group is None:
            parts.append(torch.arange(seg.size) + offset)
            scale.append(torch.ones(seg.size, dtype=torch.float64))
            offset += seg.size
            continue
        p_lo, p_hi = _half_bounds(parent_widths[seg.group], seg.half)
        c_lo, c_hi = _half_bounds(child_widths[seg.group], seg.half)
        r = seg.repeat
        parts.append(((maps[seg.group][c_lo:c_hi] - p_lo)[:, None] * r + torch.arange(r)).flatten() + offset)
        scale.append(shares[seg.group][c_lo:c_hi].repeat_interleave(r))
        offset += (p_hi - p_lo) * r
    return torch.cat(parts), (torch.cat(scale) if spec.reads else None)


def inherit_state(parent: nn.Module, child: nn.Module, layout: Layout, parent_widths: Mapping[int, int],
                  child_widths: Mapping[int, int], importance: str = DEFAULT_IMPORTANCE,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict that makes ``child`` the parent at the child's widths (see the module docstring).

    ``layout`` says where each group's channels are (the same for parent and child: only widths differ);
    ``*_widths`` map group → width. Tensors outside the layout must have the same shape in both networks.
    """
    parent_state, child_state = parent.state_dict(), child.state_dict()
    if set(parent_state) != set(child_state):
        missing = sorted(set(child_state) - set(parent_state))[:3]
        extra = sorted(set(parent_state) - set(child_state))[:3]
        raise ValueError(f"the parent network has a different structure from the child's (tensors only in the "
                         f"child: {missing or 'none'}; only in the parent: {extra or 'none'})")
    bn_weights = [f"{n}.weight" for n, m in parent.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  and m.affine]
    conv_weights = [f"{n}.weight" for n, m in parent.named_modules()
                    if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)]
    scores = channel_importance(parent_state, layout, parent_widths, importance, bn_weights, conv_weights)
    if importance == "bn":  # a group no BatchNorm normalises (e.g. a hidden linear layer's) is ranked by "l1"
        l1 = channel_importance(parent_state, layout, parent_widths, "l1", bn_weights, conv_weights)
        scores = {g: s if s.any() else l1[g] for g, s in scores.items()}
    halved = _halved_groups(layout)
    generator = torch.Generator().manual_seed(seed)
    maps, shares = {}, {}
    for g in sorted(child_widths):
        maps[g] = select_channels(scores[g], child_widths[g], g in halved)
        shares[g] = _shares(maps[g], parent_widths[g], generator)
    out = {}
    for name, target in child_state.items():
        t = parent_state[name].detach()
        for dim, spec in layout.get(name, {}).items():
            index, scale = _dim_index(spec, parent_widths, child_widths, maps, shares)
            t = t.index_select(dim, index.to(t.device))
            if scale is not None:
                shape = [1] * t.dim()
                shape[dim] = -1
                t = (t.double() * scale.to(t.device).view(shape)).to(t.dtype)
        if t.shape != target.shape:
            raise ValueError(f"the parent's {name} has shape {tuple(parent_state[name].shape)}, which does not fit "
                             f"the child's {tuple(target.shape)}: the parent belongs to another network structure")
        out[name] = t.clone()
    return out


def inherit(parent: nn.Module, tokens: Sequence[int], space: object | None = None,
            importance: str | None = None) -> nn.Module:
    """A child network for ``tokens`` that starts from the trained ``parent``'s weights.

    ``parent`` is a network built by a space (``space.token2arch``) or loaded by ``sanas.load_model``; it
    remembers its space, so ``space`` is only needed to build the child in another, compatible space (e.g. with
    other width choices). Narrower cells keep their most important channels (``importance``: ``"bn"``,
    ``"l1"`` or ``"group_l2"``, see :func:`channel_importance`; default: the space's ``default_importance``); wider
    cells are widened function-preservingly (Net2Net).
    After inheriting, re-estimate BatchNorm statistics before judging a narrower child (the evaluation mode
    ``inherit`` of :func:`sanas.training.evaluate_candidate` does).

    >>> from sanas import get_space
    >>> space = get_space("PlainCNNSpace")
    >>> child = inherit(space.token2arch([4, 4, 4, 4]), [0, 1, 2, 3])
    >>> child.sanas_tokens, sum(p.numel() for p in child.parameters()) == space.count_params([0, 1, 2, 3])
    ([0, 1, 2, 3], True)
    """
    space = space if space is not None else getattr(parent, "sanas_space", None)
    if space is None:
        raise ValueError(f"the parent {type(parent).__name__} carries no search space (it was not built by "
                         f"space.token2arch or sanas.load_model): pass space=")
    return space.inherit(parent, tokens, space.resolve_importance(importance))  # type: ignore[attr-defined]
