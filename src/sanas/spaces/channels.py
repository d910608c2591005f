"""Channel groups of any network, found by tracing it: which tensor dimensions must shrink together.

:func:`trace_channels` runs ``torch.export`` on ``model(example_input)`` (its first sample, as a batch of
:data:`TRACE_BATCH`: what it finds does not depend on the example's batch) and follows every channel through the
ATen graph. A convolution or linear layer *creates* a group (its output channels); BatchNorms, depthwise convs,
activations, pooling and the like carry it on; a residual ``add`` (or ``mul``) *couples* the groups it combines
(channel ``j`` of one with channel ``j`` of the other, so they become one group); ``cat`` lays groups side by side;
a flatten before a linear layer repeats each channel H·W times. The result is a :data:`~sanas.spaces.inherit.Layout`:
for every parameter and buffer, which group each position of each dimension belongs to — the same description
:func:`~sanas.spaces.inherit.inherit_state` uses to build a narrower (or wider) child from trained weights.

Whatever the tracer does not understand is *frozen* (never searched), never guessed: an op it has no rule for
(``split``, ``layer_norm``, a matmul, a grouped conv...) freezes every group that flows into it, and so does the
model's output (the classifier keeps its classes). Frozen groups keep their width; the reason is recorded.

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
import operator
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.fx import Node
from torch.utils.flop_counter import FlopCounterMode

from sanas.spaces.inherit import DimSpec, Layout, Segment

__all__ = ["TRACE_BATCH", "ChannelGraph", "ChannelGroup", "export_program", "trace_channels"]

#: The batch every trace runs at, whatever the example's: its first sample, repeated. Discovery must not depend on
#: the batch, and 1 is the size that does: a batch of 1 hides which dimension a reshape merges the batch into (the
#: channels of ``x.reshape(-1, h * w)`` look like a dimension of their own), so the same model was given other
#: groups at batch 1 than at 2 or 4.
TRACE_BATCH = 2


# --- labels: which group each position of a tensor's channel dimension belongs to ------------------------------
@dataclass(frozen=True)
class _Run:
    """``channels`` consecutive channels of group ``group`` (``None``: channels no search changes), each filling
    ``repeat`` consecutive positions."""

    group: int | None
    channels: int
    repeat: int = 1


@dataclass(frozen=True)
class _Label:
    """The channel dimension ``dim`` of a tensor, as runs of groups."""

    dim: int
    runs: tuple[_Run, ...]

    def groups(self) -> Iterator[int]:
        return (r.group for r in self.runs if r.group is not None)

    def at(self, dim: int) -> _Label:
        return _Label(dim, self.runs)


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


class _Groups:
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


# --- the graph walk ---------------------------------------------------------------------------------------------
_UNARY = {  # elementwise or shape-preserving: the channel label passes through
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "sigmoid", "sigmoid_", "tanh", "tanh_", "silu", "silu_",
    "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "gelu", "gelu_", "leaky_relu", "leaky_relu_", "elu",
    "elu_", "selu", "selu_", "celu", "mish", "softplus", "dropout", "dropout_", "native_dropout", "feature_dropout",
    "alpha_dropout", "clone", "contiguous", "alias", "detach", "detach_", "lift_fresh_copy", "_to_copy", "to",
    "type_as", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "square", "clamp", "clamp_", "clamp_min", "clamp_max",
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "pow",
}
_BINARY = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "where", "rsub"}
_SPATIAL = {  # keep dim 1 (channels) and change only the spatial dims
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "_adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d", "upsample_nearest1d", "upsample_nearest2d",
    "upsample_bilinear2d", "upsample_bicubic2d", "_upsample_nearest_exact2d", "constant_pad_nd", "pad",
    "reflection_pad1d", "reflection_pad2d", "replication_pad1d", "replication_pad2d",
}
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm"}
_RESHAPE = {"view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze", "squeeze_", "unsqueeze",
            "unsqueeze_"}
_PERMUTE = {"permute", "transpose", "transpose_", "t", "swapaxes", "swapdims", "movedim"}
_SLICE = {"slice", "narrow", "select", "index_select", "split", "split_with_sizes", "chunk", "unbind",
          "tensor_split"}
_ALONG_DIM = {"softmax", "_softmax", "log_softmax", "_log_softmax", "cumsum", "cumprod"}
_CONV = {"conv1d", "conv2d", "conv3d", "convolution", "_convolution"}
_BATCH_NORM = {"batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
               "_native_batch_norm_legit_functional"}


def _bind(node: Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    schema = node.target._schema  # type: ignore[union-attr]
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args):
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _shape(value: Any) -> tuple[int, ...] | None:
    v = value.meta.get("val") if isinstance(value, Node) else value
    if isinstance(v, torch.Tensor):
        return tuple(int(s) for s in v.shape)
    return None


def _norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _where(node: Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return path.removeprefix("L['self'].") or "the model"
    return "the model's forward"


class _Walk:
    """One pass over an exported graph, labelling every tensor's channel dimension."""

    def __init__(self, model: nn.Module, program: torch.export.ExportedProgram) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.groups = _Groups()
        sig = program.graph_signature
        self.tensor_of = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}  # placeholder name -> fqn
        self.env: dict[Node, Any] = {}
        #: fqn -> {dim: (label, reads)}: where each parameter's or buffer's dimensions get their channels.
        self.dims: dict[str, dict[int, tuple[_Label, bool]]] = {}
        self.assigned_by: dict[str, set[Node]] = {}
        #: (factor, operands): the MACs of one conv or linear call are factor × the product of the operands'
        #: widths (a label, or a fixed int).
        self.macs: list[tuple[int, list[_Label | int]]] = []
        self.graph = program.graph

    # -- helpers ---------------------------------------------------------------------------------------------
    def label(self, value: Any) -> _Label | None:
        out = self.env.get(value) if isinstance(value, Node) else None
        return out if isinstance(out, _Label) else None

    def freeze(self, value: Any, reason: str) -> None:
        if isinstance(value, _Label):
            for g in value.groups():
                self.groups.freeze(g, reason)
        elif isinstance(value, list | tuple):
            for v in value:
                self.freeze(v, reason)
        elif isinstance(value, Node):
            self.freeze(self.env.get(value), reason)

    def freeze_inputs(self, node: Node, reason: str) -> None:
        for arg in (*node.args, *node.kwargs.values()):
            self.freeze(arg, reason)

    def unify(self, a: _Label, b: _Label, reason: str) -> bool:
        """Couple two labels position by position; ``False`` (and both frozen) when their runs do not line up."""
        if len(a.runs) != len(b.runs) or any((x.channels, x.repeat) != (y.channels, y.repeat)
                                             for x, y in zip(a.runs, b.runs, strict=True)):
            self.freeze(a, reason)
            self.freeze(b, reason)
            return False
        for x, y in zip(a.runs, b.runs, strict=True):
            if x.group is not None and y.group is not None:
                self.groups.union(x.group, y.group)
            elif x.group is not None or y.group is not None:
                self.freeze(a, f"{reason} (combined with channels no search changes)")
                self.freeze(b, f"{reason} (combined with channels no search changes)")
        return True

    def fqn(self, value: Any) -> str | None:
        return self.tensor_of.get(value.name) if isinstance(value, Node) and value.op == "placeholder" else None

    def owner(self, fqn: str) -> nn.Module | None:
        return self.modules.get(fqn.rpartition(".")[0])

    def assign(self, fqn: str, dim: int, label: _Label, reads: bool, node: Node) -> None:
        self.assigned_by.setdefault(fqn, set()).add(node)
        dims = self.dims.setdefault(fqn, {})
        if dim in dims:  # the same weight used twice (a module called twice): both uses must agree
            self.unify(dims[dim][0], label, f"{fqn} is used twice with other channels")
            return
        dims[dim] = (label, reads)

    # -- the walk --------------------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.graph.nodes:
            if node.op == "call_function":
                self.env[node] = out = self.call(node)
                shape = _shape(node)
                if isinstance(out, _Label) and out.dim == 1 and shape is not None and len(shape) > 2:
                    for g in out.groups():
                        self.groups.resolutions[self.groups.find(g)].add(shape[2:])
            elif node.op == "output":
                self.freeze(list(node.args), "reaches the model's output")
        for name, fqn in self.tensor_of.items():
            if fqn not in self.assigned_by:
                continue
            node = next(n for n in self.graph.nodes if n.op == "placeholder" and n.name == name)
            if set(node.users) - self.assigned_by[fqn]:
                for label, _ in self.dims[fqn].values():
                    self.freeze(label, f"{fqn} is also used outside its layer")

    def call(self, node: Node) -> Any:
        target = node.target
        if target is operator.getitem:
            src, i = node.args
            value = self.env.get(src)  # type: ignore[arg-type]
            return value[i] if isinstance(value, list | tuple) and isinstance(i, int) and i < len(value) else None
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) and not (isinstance(val, list | tuple) and
                                                      any(isinstance(v, torch.Tensor) for v in val)):
            return None  # sizes, asserts, scalars: nothing to label
        name = target.overloadpacket.__name__ if isinstance(target, torch._ops.OpOverload) else ""
        if name in _CONV:
            return self.conv(node)
        if name == "linear":
            return self.linear(node)
        if not any(self.label(a) for a in _nodes([*node.args, *node.kwargs.values()])):
            return None  # nothing searchable flows in: the output's channels are fixed
        if not name:
            self.freeze_inputs(node, f"goes through {getattr(target, '__name__', target)} at {_where(node)}")
            return None
        if name in _BATCH_NORM:
            return self.batch_norm(node)
        if name in _UNARY:
            return self.unary(node)
        if name in _BINARY:
            return self.binary(node)
        if name in _SPATIAL:
            return self.spatial(node)
        if name in _REDUCE:
            return self.reduce(node)
        if name in _RESHAPE:
            return self.reshape(node)
        if name in _PERMUTE:
            return self.permute(node, name)
        if name == "expand":
            return self.expand(node)
        if name in _SLICE:
            return self.slice(node, name)
        if name in _ALONG_DIM:
            return self.along_dim(node)
        if name in ("cat", "concat", "concatenate"):
            return self.cat(node)
        self.freeze_inputs(node, f"goes through aten.{name} at {_where(node)}, which sanas cannot follow channel-wise")
        return None

    def _outputs(self, node: Node, label: _Label | None) -> Any:
        """``label`` for a single-output op; for an op returning several tensors, the label for the first."""
        val = node.meta.get("val")
        if isinstance(val, list | tuple):
            return [label] + [None] * (len(val) - 1)
        return label

    def conv(self, node: Node) -> _Label | None:
        a = _bind(node)
        x, w, b = a["input"], a["weight"], a.get("bias")
        groups, transposed = int(a.get("groups", 1)), bool(a.get("transposed", False))
        wf = self.fqn(w)
        bf = self.fqn(b) if isinstance(b, Node) else None
        mod = self.owner(wf) if wf else None
        lx = self.label(x)
        in_shape, out_shape = _shape(x), _shape(node)
        assert in_shape is not None and out_shape is not None
        c_in, c_out = in_shape[1], out_shape[1]
        kernel = math.prod(_shape(w) or (1,)) // max(1, c_out * (c_in // groups))
        factor = math.prod(out_shape[2:]) * out_shape[0] * kernel
        supported = (wf is not None and isinstance(mod, nn.modules.conv._ConvNd) and not transposed and
                     not isinstance(mod, nn.modules.conv._ConvTransposeNd) and (b is None or bf is not None))
        where = wf.rpartition(".")[0] if wf else _where(node)
        if not supported or (lx is not None and lx.dim != 1):
            self.freeze(lx, f"goes through a convolution sanas cannot slice at {where}")
            self.macs.append((factor * (c_in // groups) * c_out, []))
            return None
        if groups == 1:
            if lx is not None:
                self.assign(wf, 1, lx, True, node)  # type: ignore[arg-type]
            kind = f"{type(mod).__name__}{tuple(_shape(w)[2:])}"  # type: ignore[index]
            g = self.groups.new(c_out, where, kind, out_shape[2:])
            out = _Label(1, (_Run(g, c_out),))
            self.assign(wf, 0, out, False, node)  # type: ignore[arg-type]
            if bf is not None:
                self.assign(bf, 0, out, False, node)
            self.macs.append((factor, [lx if lx is not None else c_in, out]))
            return out
        if groups == c_in == c_out and lx is not None and all(r.repeat == 1 for r in lx.runs):
            self.assign(wf, 0, lx, False, node)  # type: ignore[arg-type]
            if bf is not None:
                self.assign(bf, 0, lx, False, node)
            self.macs.append((factor, [lx]))
            return lx
        self.freeze(lx, f"goes through a grouped convolution at {where} (groups={groups})")
        self.macs.append((factor * (c_in // groups) * c_out, []))
        return None

    def linear(self, node: Node) -> _Label | None:
        a = _bind(node)
        x, w, b = a["input"], a["weight"], a.get("bias")
        wf = self.fqn(w)
        bf = self.fqn(b) if isinstance(b, Node) else None
        lx = self.label(x)
        in_shape, out_shape = _shape(x), _shape(node)
        assert in_shape is not None and out_shape is not None
        c_in, c_out = in_shape[-1], out_shape[-1]
        factor = math.prod(out_shape[:-1])
        last = len(out_shape) - 1
        where = wf.rpartition(".")[0] if wf else _where(node)
        if wf is None or not isinstance(self.owner(wf), nn.Linear) or (b is not None and bf is None) or \
                (lx is not None and lx.dim != last):
            self.freeze(lx, f"goes through a linear layer sanas cannot slice at {where}")
            self.macs.append((factor * c_in * c_out, []))
            return None
        if lx is not None:
            self.assign(wf, 1, lx, True, node)
        g = self.groups.new(c_out, where, "Linear", ())
        out = _Label(last, (_Run(g, c_out),))
        self.assign(wf, 0, out, False, node)
        if bf is not None:
            self.assign(bf, 0, out, False, node)
        self.macs.append((factor, [lx if lx is not None else c_in, out]))
        return out

    def batch_norm(self, node: Node) -> Any:
        a = _bind(node)
        x = a["input"]
        lx = self.label(x)
        tensors = [a.get(k) for k in ("weight", "bias", "running_mean", "running_var")]
        fqns = [self.fqn(t) for t in tensors if isinstance(t, Node)]
        mods = {self.owner(f) for f in fqns if f is not None}
        ok = None not in fqns and len(mods) <= 1 and all(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
        if lx is None:
            return self._outputs(node, None)
        if not ok or lx.dim != 1:
            self.freeze(lx, f"goes through a normalisation sanas cannot slice at {_where(node)}")
            return self._outputs(node, None)
        for f in fqns:
            self.assign(f, 0, lx, False, node)  # type: ignore[arg-type]
        return self._outputs(node, lx)

    def unary(self, node: Node) -> Any:
        x = node.args[0]
        lx = self.label(x)
        out_shape = _shape(node) if isinstance(node.meta.get("val"), torch.Tensor) else \
            _shape(node.meta["val"][0])
        if lx is not None and out_shape != _shape(x):
            self.freeze(lx, f"changes shape in aten.{node.target.overloadpacket.__name__} at {_where(node)}")
            return self._outputs(node, None)
        return self._outputs(node, lx)

    def binary(self, node: Node) -> _Label | None:
        out_shape = _shape(node)
        assert out_shape is not None
        n = len(out_shape)
        labelled, plain = [], []
        for arg in (*node.args, *node.kwargs.values()):
            if not isinstance(arg, Node) or _shape(arg) is None:
                continue
            shape = _shape(arg)
            lab = self.label(arg)
            if lab is not None:
                labelled.append(lab.at(lab.dim + n - len(shape)))  # type: ignore[arg-type]
            else:
                plain.append((shape, n - len(shape)))  # type: ignore[arg-type]
        if not labelled:
            return None
        where = f"aten.{node.target.overloadpacket.__name__} at {_where(node)}"  # type: ignore[union-attr]
        if len({lab.dim for lab in labelled}) > 1:
            self.freeze(labelled, f"combines channels with other dimensions in {where}")
            return None
        d = labelled[0].dim
        for shape, offset in plain:
            i = d - offset
            if 0 <= i < len(shape) and shape[i] != 1:
                self.freeze(labelled, f"combines channels with a tensor of fixed channels in {where}")
                return None
        base = labelled[0]
        for other in labelled[1:]:
            if not self.unify(base, other, f"combines unaligned channels in {where}"):
                return None
        return base

    def spatial(self, node: Node) -> Any:
        x = node.args[0]
        lx = self.label(x)
        val = node.meta.get("val")
        out_shape = _shape(val[0] if isinstance(val, list | tuple) else val)
        in_shape = _shape(x)
        if lx is None:
            return self._outputs(node, None)
        if lx.dim != 1 or out_shape is None or in_shape is None or len(out_shape) != len(in_shape) or \
                out_shape[1] != in_shape[1]:
            self.freeze(lx, f"is padded or pooled across channels at {_where(node)}")
            return self._outputs(node, None)
        return self._outputs(node, lx)

    def reduce(self, node: Node) -> Any:
        a = _bind(node)
        x = a.get("self", a.get("input"))
        lx = self.label(x)
        in_shape = _shape(x)
        if lx is None or in_shape is None:
            return self._outputs(node, None)
        dims = a.get("dim")
        if isinstance(dims, int):
            dims = [dims]
        if not dims:
            self.freeze(lx, f"is reduced over all dimensions at {_where(node)}")
            return self._outputs(node, None)
        dims = {_norm_dim(int(d), len(in_shape)) for d in dims}
        if lx.dim in dims:
            self.freeze(lx, f"is reduced over channels at {_where(node)}")
            return self._outputs(node, None)
        keep = bool(a.get("keepdim", False))
        return self._outputs(node, lx.at(lx.dim if keep else lx.dim - sum(d < lx.dim for d in dims)))

    def reshape(self, node: Node) -> _Label | None:
        x = node.args[0]
        lx = self.label(x)
        in_shape, out_shape = _shape(x), _shape(node)
        if lx is None or in_shape is None or out_shape is None:
            return None
        d = lx.dim
        size = in_shape[d]
        before = math.prod(in_shape[:d])
        for e in range(len(out_shape)):
            if math.prod(out_shape[:e]) != before or out_shape[e] % size:
                continue
            repeat = out_shape[e] // size
            merged = [math.prod(in_shape[d + 1:k]) for k in range(d + 1, len(in_shape) + 1)]
            if repeat in merged:
                return _Label(e, tuple(_Run(r.group, r.channels, r.repeat * repeat) for r in lx.runs))
        self.freeze(lx, f"is reshaped across channels at {_where(node)}")
        return None

    def permute(self, node: Node, name: str) -> _Label | None:
        lx = self.label(node.args[0])
        shape = _shape(node.args[0])
        if lx is None or shape is None:
            return None
        n = len(shape)
        a = _bind(node)
        if name == "permute":
            order = [_norm_dim(int(d), n) for d in a["dims"]]
            return lx.at(order.index(lx.dim))
        if name == "t":
            return lx.at(1 - lx.dim) if n == 2 else lx
        if name == "movedim":
            self.freeze(lx, f"is moved by movedim at {_where(node)}")
            return None
        d0, d1 = (_norm_dim(int(a[k]), n) for k in ("dim0", "dim1"))
        return lx.at(d1 if lx.dim == d0 else d0 if lx.dim == d1 else lx.dim)

    def expand(self, node: Node) -> _Label | None:
        lx = self.label(node.args[0])
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        if lx is None or in_shape is None or out_shape is None:
            return None
        d = lx.dim + len(out_shape) - len(in_shape)
        if out_shape[d] != in_shape[lx.dim]:
            self.freeze(lx, f"is expanded at {_where(node)}")
            return None
        return lx.at(d)

    def slice(self, node: Node, name: str) -> Any:
        a = _bind(node)
        x = a.get("self", a.get("input"))
        lx = self.label(x)
        in_shape = _shape(x)
        val = node.meta.get("val")
        if lx is None or in_shape is None:
            return [None] * len(val) if isinstance(val, list | tuple) else None
        dim = _norm_dim(int(a.get("dim", 0)), len(in_shape))
        if dim == lx.dim:
            out_shape = _shape(node) if isinstance(val, torch.Tensor) else None
            if name == "slice" and out_shape == in_shape:
                return lx  # x[:, :] — the whole dimension
            self.freeze(lx, f"is split or sliced along channels at {_where(node)}")
            return [None] * len(val) if isinstance(val, list | tuple) else None
        out = lx.at(lx.dim - 1) if name in ("select", "unbind") and dim < lx.dim else lx
        return [out] * len(val) if isinstance(val, list | tuple) else out

    def along_dim(self, node: Node) -> _Label | None:
        a = _bind(node)
        x = a.get("self", a.get("input"))
        lx = self.label(x)
        shape = _shape(x)
        if lx is None or shape is None:
            return None
        if _norm_dim(int(a["dim"]), len(shape)) == lx.dim:
            self.freeze(lx, f"is normalised across channels at {_where(node)}")
            return None
        return lx

    def cat(self, node: Node) -> _Label | None:
        a = _bind(node)
        tensors = [t for t in a["tensors"] if isinstance(t, Node)]
        shapes = [_shape(t) for t in tensors]
        labels = [self.label(t) for t in tensors]
        if not any(labels) or any(s is None for s in shapes):
            return None
        n = len(shapes[0])  # type: ignore[arg-type]
        dim = _norm_dim(int(a.get("dim", 0)), n)
        present = [lab for lab in labels if lab is not None]
        if all(lab.dim == dim for lab in present):
            runs: list[_Run] = []
            for lab, shape in zip(labels, shapes, strict=True):
                if lab is not None:
                    runs += lab.runs
                elif shape[dim]:  # type: ignore[index]
                    runs.append(_Run(None, shape[dim]))  # type: ignore[index]
            return _Label(dim, tuple(runs))
        if len(present) == len(labels) and len({lab.dim for lab in present}) == 1:
            for other in present[1:]:
                if not self.unify(present[0], other, f"is concatenated along another dimension at {_where(node)}"):
                    return None
            return present[0]
        self.freeze(present, f"is concatenated with unlabelled tensors at {_where(node)}")
        return None


def _nodes(value: Any) -> list[Node]:
    if isinstance(value, Node):
        return [value]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _nodes(v)]
    return []


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
            _fix_attributes(module)
        return child


def _fix_attributes(module: nn.Module) -> None:
    """Make a layer's size attributes agree with its (resized) tensors."""
    if isinstance(module, nn.modules.conv._ConvNd):
        out_c, in_per_group = module.weight.shape[:2]
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        module.out_channels = int(out_c)
        if depthwise:
            module.groups = module.in_channels = int(out_c)
        else:
            module.in_channels = int(in_per_group) * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = (int(s) for s in module.weight.shape)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        tensor = module.weight if module.weight is not None else module.running_mean
        module.num_features = int(tensor.shape[0])  # type: ignore[union-attr]


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
    """Find the channel groups of ``model`` (see the module docstring) on ``example_input``.

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
    walk = _Walk(model, program)
    walk.run()
    groups = walk.groups
    # Parameters shared by two modules would be resized in one only.
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen and name in walk.dims:
            for label, _ in walk.dims[name].values():
                walk.freeze(label, f"{name} is shared with {seen[id(p)]}")
        seen.setdefault(id(p), name)
    for g in range(len(groups.parent)):
        if groups.find(g) == g and groups.width[g] < 2:
            groups.freeze(g, "has a single channel")
    roots = sorted({groups.find(g) for g in range(len(groups.parent))})
    searchable = [r for r in roots if groups.frozen[r] is None]
    index = {r: k for k, r in enumerate(searchable)}

    def spec(label: _Label, reads: bool) -> DimSpec:
        segments: list[Segment] = []
        for run in label.runs:
            root = groups.find(run.group) if run.group is not None else None
            if root in index:
                segments.append(Segment(group=index[root], repeat=run.repeat))
            elif segments and segments[-1].group is None:
                segments[-1] = Segment(size=segments[-1].size + run.channels * run.repeat)
            else:
                segments.append(Segment(size=run.channels * run.repeat))
        return DimSpec(tuple(segments), reads)

    def form(operand: _Label | int) -> _Form:
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
