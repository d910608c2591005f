"""Trace a model and report its channel groups: :func:`trace_channels`, :class:`ChannelGraph`, :func:`export_program`.

:func:`trace_channels` exports the model, runs the :class:`~sanas.spaces.channels.walk.Walk` over its ATen graph
with the op :data:`~sanas.spaces.channels.rules.RULES`, and turns what the walk found into a :class:`ChannelGraph`:
the searchable groups, the frozen ones with their reasons, the :data:`~sanas.spaces.inherit.Layout`, and exact
parameter and MAC counts for any widths.

Why ``torch.export`` and not Torch-Pruning's ``DependencyGraph`` (evaluated, version 1.6.1): export refuses a
forward whose control flow depends on the input's values — the one kind of model whose channel coupling cannot be
known from one trace — while Torch-Pruning's autograd trace silently follows the branch the example took; and
Torch-Pruning 1.6.1 mis-groups a concatenation that is flattened into a linear layer (it puts both concatenated
convs in one group of the first one's width), which would cut the wrong channels. Export also gives the shapes
for exact MAC counts, and the exported program is the portable form of a chosen child (:func:`export_program`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sanas.spaces.channels.groups import ChannelGroup, Label
from sanas.spaces.channels.rules import RULES, fix_attributes
from sanas.spaces.channels.walk import Walk
from sanas.spaces.inherit import DimSpec, Layout, Segment

__all__ = ["TRACE_BATCH", "ChannelGraph", "export_program", "trace_channels"]

#: The batch every trace runs at, whatever the example's: its first sample, repeated. Discovery must not depend on
#: the batch, and 1 is the size that does: a batch of 1 hides which dimension a reshape merges the batch into (the
#: channels of ``x.reshape(-1, h * w)`` look like a dimension of their own), so the same model was given other
#: groups at batch 1 than at 2 or 4.
TRACE_BATCH = 2


# --- the result -------------------------------------------------------------------------------------------------
_Form = tuple[int, dict[int, int]]  # a width as constant + Σ coef[k] · width of searchable group k


@dataclass
class ChannelGraph:
    """What :func:`trace_channels` found. Group indices ``0..len(groups)-1`` are the searchable groups.

    ``layout`` says where every searchable group appears (frozen channels are plain ``Segment(size=...)``);
    ``frozen`` lists ``(group name, width, reason)`` of the groups that keep their width.
    """

    groups: list[ChannelGroup]
    frozen: list[tuple[str, int, str]]
    layout: Layout
    batch: int
    _params: list[tuple[int, list[_Form]]] = field(repr=False)
    _macs: list[tuple[int, list[_Form]]] = field(repr=False)
    _const_params: int = field(repr=False, default=0)
    _const_macs: int = field(repr=False, default=0)

    @property
    def widths(self) -> list[int]:
        """The trained width of every searchable group."""
        return [g.width for g in self.groups]

    @staticmethod
    def _value(form: _Form, widths: Sequence[int]) -> int:
        const, coef = form
        return const + sum(c * widths[k] for k, c in coef.items())

    def count_params(self, widths: Sequence[int]) -> int:
        """Parameters of the network with searchable group ``k`` at ``widths[k]`` channels."""
        return self._const_params + sum(f * math.prod(self._value(d, widths) for d in dims) for f, dims in self._params)

    def count_macs(self, widths: Sequence[int]) -> int:
        """Forward multiply-accumulates for one example (what ``FlopCounterMode`` reports, halved)."""
        total = self._const_macs + sum(f * math.prod(self._value(d, widths) for d in dims) for f, dims in self._macs)
        return total // self.batch

    def shrink(self, model: nn.Module, widths: Sequence[int]) -> nn.Module:
        """A copy of ``model`` whose layers have the shapes of ``widths`` (weights zeroed where shapes changed:
        load a state, or reset the parameters, before use)."""
        child = copy.deepcopy(model)
        for attr in ("sanas_space", "sanas_tokens"):
            child.__dict__.pop(attr, None)
        touched: dict[str, nn.Module] = {}
        for fqn, dims in self.layout.items():
            path, _, name = fqn.rpartition(".")
            module = child.get_submodule(path)
            tensor = getattr(module, name)
            shape = list(tensor.shape)
            for dim, spec in dims.items():
                shape[dim] = self._value(_spec_form(spec), widths)
            if shape == list(tensor.shape):
                continue
            new = torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)
            if isinstance(tensor, nn.Parameter):
                setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
            else:
                module._buffers[name] = new
            touched[path] = module
        for module in touched.values():
            fix_attributes(module)
        return child


    def mask(self, model: nn.Module, dropped: dict[int, Sequence[int]]) -> nn.Module:
        """A copy of ``model`` in which channels ``dropped[k]`` of group ``k`` compute zero: every weight that the
        layout ties to them set to zero (running variances to one). A child that keeps the other channels must
        compute what this copy computes: what :class:`~sanas.spaces.model.ModelSpace` checks its groups with."""
        out = copy.deepcopy(model)
        state = out.state_dict(keep_vars=True)
        with torch.no_grad():
            for fqn, dims in self.layout.items():
                tensor = state[fqn]
                for dim, spec in dims.items():
                    offset, index = 0, []
                    for seg in spec.segments:
                        if seg.group is None:
                            offset += seg.size
                            continue
                        index += [offset + c * seg.repeat + i for c in dropped.get(seg.group, ())
                                  for i in range(seg.repeat)]
                        offset += self.groups[seg.group].width * seg.repeat
                    if index:
                        tensor.index_fill_(dim, torch.tensor(index, dtype=torch.long, device=tensor.device),
                                           1.0 if fqn.endswith("running_var") else 0.0)
        return out


def _spec_form(spec: DimSpec) -> _Form:
    const, coef = 0, {}
    for seg in spec.segments:
        if seg.group is None:
            const += seg.size
        else:
            coef[seg.group] = coef.get(seg.group, 0) + seg.repeat
    return const, coef


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.export prints partial graphs and warnings when it fails; the caller reports the failure itself."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    was_training = model.training
    model.eval()
    try:
        with _quiet():
            return torch.export.export(model, (example,), strict=False)
    except Exception as e:
        raise ValueError(f"cannot trace {type(model).__name__}: {_export_error(e)}; sanas needs a forward that "
                         f"torch.export can trace, with no control flow on the input's values") from None
    finally:
        model.train(was_training)


def _export_error(e: Exception) -> str:
    text = str(e)
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    if "data-dependent" in first or isinstance(e, torch.fx.experimental.symbolic_shapes.GuardOnDataDependentSymNode):
        first = "its control flow depends on the input's values"
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s+(.+)', text)
    if frames:
        path, line, func, code = frames[-1]
        first += f" (at {path.rsplit('/', 1)[-1]}:{line} in {func}: `{code.strip()}`)"
    return first


def _flops(model: nn.Module, example: torch.Tensor) -> int:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _trace_example(example_input: torch.Tensor) -> torch.Tensor:
    """The example at :data:`TRACE_BATCH`: its first sample, repeated."""
    if example_input.dim() < 2 or example_input.shape[0] < 1:
        raise ValueError(f"example_input has shape {tuple(example_input.shape)}, expected a batch (N, C, ...) of at "
                         f"least one example")
    return example_input[:1].expand(TRACE_BATCH, *example_input.shape[1:]).contiguous()


def trace_channels(model: nn.Module, example_input: torch.Tensor) -> ChannelGraph:
    """Find the channel groups of ``model`` (see :mod:`sanas.spaces.channels`) on ``example_input``.

    Only the example's first sample is used: the model is traced on it repeated :data:`TRACE_BATCH` times, so the
    groups and counts are the same for any batch of examples; the forward must accept any batch size.
    Raises ``ValueError`` naming the cause when the model cannot be traced.

    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3),
    ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    >>> graph = trace_channels(net, torch.zeros(1, 3, 16, 16))
    >>> [(g.name, g.width) for g in graph.groups], [f[0] for f in graph.frozen]
    ([('0', 8), ('3', 16)], ['6'])
    >>> graph.count_params([4, 8]) == sum(p.numel() for p in graph.shrink(net, [4, 8]).parameters())
    True
    """
    example = _trace_example(example_input)
    try:
        program = _export(model, example)
    except ValueError as e:
        if int(example_input.shape[0]) == TRACE_BATCH:
            raise
        raise ValueError(f"{e} (sanas traces on a batch of {TRACE_BATCH} copies of the example: the forward must "
                         f"accept any batch size, e.g. x.flatten(1), not x.flatten())") from None
    walk = Walk(model, program, RULES)
    walk.run()
    groups = walk.groups
    # Parameters shared by two modules would be resized in one only.
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen and name in walk.dims:
            for label, _ in walk.dims[name].values():
                walk.freeze(label, f"{name} is shared with {seen[id(p)]}")
        seen.setdefault(id(p), name)
    roots = [g for g in range(len(groups.parent)) if groups.is_leaf(g)]
    for g in roots:
        if groups.width[g] < 2:
            groups.freeze(g, "has a single channel")
    searchable = [r for r in roots if groups.frozen[r] is None]
    index = {r: k for k, r in enumerate(searchable)}

    def spec(label: Label, reads: bool) -> DimSpec:
        segments: list[Segment] = []
        for run in groups.resolve(label.runs):
            root = run.group
            if root in index:
                segments.append(Segment(group=index[root], repeat=run.repeat))
            elif segments and segments[-1].group is None:
                segments[-1] = Segment(size=segments[-1].size + run.channels * run.repeat)
            else:
                segments.append(Segment(size=run.channels * run.repeat))
        return DimSpec(tuple(segments), reads)

    def form(operand: Label | int) -> _Form:
        return (operand, {}) if isinstance(operand, int) else _spec_form(spec(operand, False))

    layout: Layout = {}
    for fqn, dims in walk.dims.items():
        specs = {d: spec(label, reads) for d, (label, reads) in dims.items()}
        if any(seg.group is not None for s in specs.values() for seg in s.segments):
            layout[fqn] = specs
    params, const_params = [], 0
    for name, p in model.named_parameters():
        if name not in layout:
            const_params += p.numel()
            continue
        fixed = math.prod(s for d, s in enumerate(p.shape) if d not in layout[name])
        params.append((fixed, [_spec_form(layout[name][d]) for d in sorted(layout[name])]))
    macs = [(f, [form(o) for o in operands]) for f, operands in walk.macs]
    graph = ChannelGraph(
        groups=[ChannelGroup(groups.width[r], groups.producers[r], tuple(sorted(groups.kinds[r])),
                             tuple(sorted(groups.resolutions[r]))) for r in searchable],
        frozen=[(ChannelGroup(groups.width[r], groups.producers[r], (), ()).name, groups.width[r],
                 groups.frozen[r] or "") for r in roots if r not in index],
        layout=layout, batch=TRACE_BATCH, _params=params, _macs=macs, _const_params=const_params)
    traced = sum(f * math.prod(graph._value(d, graph.widths) for d in dims) for f, dims in macs)
    graph._const_macs = _flops(model, example) // 2 - traced  # ops the walk does not count (matmuls...)
    return graph


def export_program(net: nn.Module, example_input: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Save ``net`` as a ``torch.export`` program: ``torch.export.load(path).module()`` runs it with PyTorch
    alone (no sanas, no model code), for any batch size.

    >>> import tempfile, os
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "net.pt2")
    >>> export_program(net, torch.zeros(2, 1, 8, 8), path)
    >>> torch.export.load(path).module()(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 2])
    """
    net = net.eval()
    example = example_input if example_input.shape[0] > 1 else example_input.expand(2, *example_input.shape[1:])
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet():
            program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as e:
        raise ValueError(f"cannot export {type(net).__name__}: {_export_error(e)}") from None
    torch.export.save(program, path)
