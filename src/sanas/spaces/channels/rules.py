"""The op rules: how channels flow through each ATen op, one function per family of ops.

A rule takes the :class:`~sanas.spaces.channels.walk.Walk` and one ``call_function`` node, and returns the
output's :class:`~sanas.spaces.channels.groups.Label` (``None``: the output's channels are fixed; a list for an
op returning several tensors). Through the walk it reads its inputs' labels (``walk.label``), records which
parameter dimensions carry which channels (``walk.assign``) and the MACs of a layer (``walk.macs``), couples
groups (``walk.unify``) and freezes what it cannot follow (``walk.freeze``, with the reason) — never a guess.
:func:`rule` registers a function for the ops it names in :data:`RULES`; an op without a rule freezes every
group that flows into it. A layer whose size attributes must follow its resized tensors (``out_channels``,
``num_features``...) also has a branch in :func:`fix_attributes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.fx import Node

from sanas.spaces.channels.groups import Label, Run
from sanas.spaces.channels.walk import OpRule, Rule, Walk, bind, location, norm_dim, op_name, outputs, shape_of

#: ATen op name (no overload: ``conv2d``, ``add_``) -> its rule.
RULES: dict[str, OpRule] = {}


def rule(*names: str, creates: bool = False) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule of the ATen ops ``names``; ``creates``: it runs even when no
    searchable channel flows in (a layer that creates groups)."""

    def register(fn: Rule) -> Rule:
        for name in names:
            if name in RULES:
                raise ValueError(f"aten.{name} has two rules: {RULES[name].apply.__name__} and {fn.__name__}")
            RULES[name] = OpRule(fn, creates)
        return fn

    return register


# --- layers: they create groups, or own parameters that carry them ----------------------------------------------
@rule("conv1d", "conv2d", "conv3d", "convolution", "_convolution", creates=True)
def conv(walk: Walk, node: Node) -> Label | None:
    """A convolution creates a group (its output channels); a depthwise one carries its input's on."""
    a = bind(node)
    x, w, b = a["input"], a["weight"], a.get("bias")
    groups, transposed = int(a.get("groups", 1)), bool(a.get("transposed", False))
    wf = walk.fqn(w)
    bf = walk.fqn(b) if isinstance(b, Node) else None
    mod = walk.owner(wf) if wf else None
    lx = walk.label(x)
    in_shape, out_shape = shape_of(x), shape_of(node)
    assert in_shape is not None and out_shape is not None
    c_in, c_out = in_shape[1], out_shape[1]
    kernel = math.prod(shape_of(w) or (1,)) // max(1, c_out * (c_in // groups))
    factor = math.prod(out_shape[2:]) * out_shape[0] * kernel
    supported = (wf is not None and isinstance(mod, nn.modules.conv._ConvNd) and not transposed and
                 not isinstance(mod, nn.modules.conv._ConvTransposeNd) and (b is None or bf is not None))
    where = wf.rpartition(".")[0] if wf else location(node)
    if not supported or (lx is not None and lx.dim != 1):
        walk.freeze(lx, f"goes through a convolution sanas cannot slice at {where}")
        walk.macs.append((factor * (c_in // groups) * c_out, []))
        return None
    if groups == 1:
        if lx is not None:
            walk.assign(wf, 1, lx, True, node)  # type: ignore[arg-type]
        kind = f"{type(mod).__name__}{tuple(shape_of(w)[2:])}"  # type: ignore[index]
        g = walk.groups.new(c_out, where, kind, out_shape[2:])
        out = Label(1, (Run(g, c_out),))
        walk.assign(wf, 0, out, False, node)  # type: ignore[arg-type]
        if bf is not None:
            walk.assign(bf, 0, out, False, node)
        walk.macs.append((factor, [lx if lx is not None else c_in, out]))
        return out
    if groups == c_in == c_out and lx is not None:  # per position: a channel repeated by a shuffle is too
        walk.assign(wf, 0, lx, False, node)  # type: ignore[arg-type]
        if bf is not None:
            walk.assign(bf, 0, lx, False, node)
        walk.macs.append((factor, [lx]))
        return lx
    walk.freeze(lx, f"goes through a grouped convolution at {where} (groups={groups})")
    walk.macs.append((factor * (c_in // groups) * c_out, []))
    return None


@rule("linear", creates=True)
def linear(walk: Walk, node: Node) -> Label | None:
    """A linear layer creates a group (its output features) on its input's last dimension."""
    a = bind(node)
    x, w, b = a["input"], a["weight"], a.get("bias")
    wf = walk.fqn(w)
    bf = walk.fqn(b) if isinstance(b, Node) else None
    lx = walk.label(x)
    in_shape, out_shape = shape_of(x), shape_of(node)
    assert in_shape is not None and out_shape is not None
    c_in, c_out = in_shape[-1], out_shape[-1]
    factor = math.prod(out_shape[:-1])
    last = len(out_shape) - 1
    where = wf.rpartition(".")[0] if wf else location(node)
    if wf is None or not isinstance(walk.owner(wf), nn.Linear) or (b is not None and bf is None) or \
            (lx is not None and lx.dim != last):
        walk.freeze(lx, f"goes through a linear layer sanas cannot slice at {where}")
        walk.macs.append((factor * c_in * c_out, []))
        return None
    if lx is not None:
        walk.assign(wf, 1, lx, True, node)
    g = walk.groups.new(c_out, where, "Linear", ())
    out = Label(last, (Run(g, c_out),))
    walk.assign(wf, 0, out, False, node)
    if bf is not None:
        walk.assign(bf, 0, out, False, node)
    walk.macs.append((factor, [lx if lx is not None else c_in, out]))
    return out


@rule("batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
      "_native_batch_norm_legit_functional")
def batch_norm(walk: Walk, node: Node) -> Any:
    """A BatchNorm carries its input's channels on; its weight, bias and running statistics have them."""
    a = bind(node)
    x = a["input"]
    lx = walk.label(x)
    tensors = [a.get(k) for k in ("weight", "bias", "running_mean", "running_var")]
    fqns = [walk.fqn(t) for t in tensors if isinstance(t, Node)]
    mods = {walk.owner(f) for f in fqns if f is not None}
    ok = None not in fqns and len(mods) <= 1 and all(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in mods)
    if lx is None:
        return outputs(node, None)
    if not ok or lx.dim != 1:
        walk.freeze(lx, f"goes through a normalisation sanas cannot slice at {location(node)}")
        return outputs(node, None)
    for f in fqns:
        walk.assign(f, 0, lx, False, node)  # type: ignore[arg-type]
    return outputs(node, lx)


def fix_attributes(module: nn.Module) -> None:
    """Make a layer's size attributes agree with its (resized) tensors, for ``ChannelGraph.shrink``: a rule that lets
    a new kind of layer be resized adds its branch here."""
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


# --- elementwise ------------------------------------------------------------------------------------------------
@rule("relu", "relu_", "relu6", "relu6_", "hardtanh", "hardtanh_", "sigmoid", "sigmoid_", "tanh", "tanh_", "silu",
      "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "gelu", "gelu_", "leaky_relu", "leaky_relu_",
      "elu", "elu_", "selu", "selu_", "celu", "celu_", "mish", "mish_", "softplus", "dropout", "dropout_",
      "native_dropout", "feature_dropout", "feature_dropout_", "alpha_dropout", "alpha_dropout_", "clone",
      "contiguous", "alias", "detach", "detach_", "lift_fresh_copy", "_to_copy", "to", "type_as", "neg", "neg_", "abs",
      "abs_", "exp", "exp_", "log", "log_", "sqrt", "sqrt_", "rsqrt", "rsqrt_", "square", "square_", "clamp", "clamp_",
      "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "zeros_like", "ones_like", "empty_like", "full_like",
      "rand_like", "randn_like", "pow", "pow_")
def unary(walk: Walk, node: Node) -> Any:
    """Elementwise or shape-preserving: the channel label passes through. An in-place variant (``relu6_``: what
    ``F.relu6(x, inplace=True)`` runs) returns its input, so it passes the label on in the same way."""
    x = node.args[0]
    lx = walk.label(x)
    out_shape = shape_of(node) if isinstance(node.meta.get("val"), torch.Tensor) else \
        shape_of(node.meta["val"][0])
    if lx is not None and out_shape != shape_of(x):
        walk.freeze(lx, f"changes shape in aten.{op_name(node)} at {location(node)}")
        return outputs(node, None)
    return outputs(node, lx)


@rule("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "where", "rsub")
def binary(walk: Walk, node: Node) -> Label | None:
    """Two tensors combined channel by channel (a residual ``add``) couple their groups: one group."""
    out_shape = shape_of(node)
    assert out_shape is not None
    n = len(out_shape)
    labelled, plain = [], []
    for arg in (*node.args, *node.kwargs.values()):
        if not isinstance(arg, Node) or shape_of(arg) is None:
            continue
        shape = shape_of(arg)
        lab = walk.label(arg)
        if lab is not None:
            labelled.append(lab.at(lab.dim + n - len(shape)))  # type: ignore[arg-type]
        else:
            plain.append((shape, n - len(shape)))  # type: ignore[arg-type]
    if not labelled:
        return None
    where = f"aten.{op_name(node)} at {location(node)}"
    if len({lab.dim for lab in labelled}) > 1:
        walk.freeze(labelled, f"combines channels with other dimensions in {where}")
        return None
    d = labelled[0].dim
    for shape, offset in plain:
        i = d - offset
        if 0 <= i < len(shape) and shape[i] != 1:
            walk.freeze(labelled, f"combines channels with a tensor of fixed channels in {where}")
            return None
    base = labelled[0]
    for other in labelled[1:]:
        if not walk.unify(base, other, f"combines unaligned channels in {where}"):
            return None
    return base


# --- along other dimensions -------------------------------------------------------------------------------------
@rule("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d",
      "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
      "_adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d", "upsample_nearest1d",
      "upsample_nearest2d", "upsample_bilinear2d", "upsample_bicubic2d", "_upsample_nearest_exact2d",
      "constant_pad_nd", "pad", "reflection_pad1d", "reflection_pad2d", "replication_pad1d", "replication_pad2d")
def spatial(walk: Walk, node: Node) -> Any:
    """Pooling, upsampling, padding: keep dim 1 (channels) and change only the spatial dims."""
    x = node.args[0]
    lx = walk.label(x)
    val = node.meta.get("val")
    out_shape = shape_of(val[0] if isinstance(val, list | tuple) else val)
    in_shape = shape_of(x)
    if lx is None:
        return outputs(node, None)
    if lx.dim != 1 or out_shape is None or in_shape is None or len(out_shape) != len(in_shape) or \
            out_shape[1] != in_shape[1]:
        walk.freeze(lx, f"is padded or pooled across channels at {location(node)}")
        return outputs(node, None)
    return outputs(node, lx)


@rule("mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm")
def reduce(walk: Walk, node: Node) -> Any:
    """A reduction over other dimensions keeps the channels (at their new position)."""
    a = bind(node)
    x = a.get("self", a.get("input"))
    lx = walk.label(x)
    in_shape = shape_of(x)
    if lx is None or in_shape is None:
        return outputs(node, None)
    dims = a.get("dim")
    if isinstance(dims, int):
        dims = [dims]
    if not dims:
        walk.freeze(lx, f"is reduced over all dimensions at {location(node)}")
        return outputs(node, None)
    dims = {norm_dim(int(d), len(in_shape)) for d in dims}
    if lx.dim in dims:
        walk.freeze(lx, f"is reduced over channels at {location(node)}")
        return outputs(node, None)
    keep = bool(a.get("keepdim", False))
    return outputs(node, lx.at(lx.dim if keep else lx.dim - sum(d < lx.dim for d in dims)))


@rule("softmax", "_softmax", "log_softmax", "_log_softmax", "cumsum", "cumprod")
def along_dim(walk: Walk, node: Node) -> Label | None:
    """An op along one dimension keeps the channels unless it runs across them."""
    a = bind(node)
    x = a.get("self", a.get("input"))
    lx = walk.label(x)
    shape = shape_of(x)
    if lx is None or shape is None:
        return None
    if norm_dim(int(a["dim"]), len(shape)) == lx.dim:
        walk.freeze(lx, f"is normalised across channels at {location(node)}")
        return None
    return lx


# --- shape ops --------------------------------------------------------------------------------------------------
@rule("view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_")
def reshape(walk: Walk, node: Node) -> Label | None:
    """A reshape that merges the channels with the dimensions after them (a flatten before a linear layer)
    repeats each channel. One that splits them into ``g`` blocks, ``(C,) -> (g, C / g)`` (a channel shuffle's
    first view: ``x.view(b, g, c // g, h, w)``), couples the blocks (:meth:`Walk.cut`) and labels the second of the
    two dimensions: the transpose and the view that merge them back then interleave the blocks, each coupled
    channel filling ``g`` consecutive positions. The number of blocks ``g`` is taken to be the fixed one (the
    shuffle's groups) and ``C / g`` to follow the channels; when both are equal that cannot be told from the
    shapes, and the channels are frozen. Any other split is frozen."""
    x = node.args[0]
    lx = walk.label(x)
    in_shape, out_shape = shape_of(x), shape_of(node)
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
            return Label(e, tuple(Run(r.group, r.channels, r.repeat * repeat) for r in lx.runs))
    for e in range(len(out_shape) - 1):
        g, b = out_shape[e], out_shape[e + 1]
        if math.prod(out_shape[:e]) == before and g * b == size and g > 1 and b > 1 and \
                tuple(out_shape[e + 2:]) == tuple(in_shape[d + 1:]):
            if g == b:
                walk.freeze(lx, f"is split into {g} blocks of {b} channels at {location(node)}, and which of the two "
                                f"is fixed cannot be told from the shapes")
                return None
            block = walk.cut(lx, g, f"is split into {g} blocks that cannot be lined up at {location(node)}")
            return block.at(e + 1) if block is not None else None
    walk.freeze(lx, f"is reshaped across channels at {location(node)}")
    return None


@rule("permute", "transpose", "transpose_", "t", "swapaxes", "swapdims", "movedim")
def permute(walk: Walk, node: Node) -> Label | None:
    """Reordered dimensions: the channels move with theirs."""
    name = op_name(node)
    lx = walk.label(node.args[0])
    shape = shape_of(node.args[0])
    if lx is None or shape is None:
        return None
    n = len(shape)
    a = bind(node)
    if name == "permute":
        order = [norm_dim(int(d), n) for d in a["dims"]]
        return lx.at(order.index(lx.dim))
    if name == "t":
        return lx.at(1 - lx.dim) if n == 2 else lx
    if name == "movedim":
        walk.freeze(lx, f"is moved by movedim at {location(node)}")
        return None
    d0, d1 = (norm_dim(int(a[k]), n) for k in ("dim0", "dim1"))
    return lx.at(d1 if lx.dim == d0 else d0 if lx.dim == d1 else lx.dim)


@rule("expand")
def expand(walk: Walk, node: Node) -> Label | None:
    """Broadcast to a larger shape: the channels keep their size."""
    lx = walk.label(node.args[0])
    in_shape, out_shape = shape_of(node.args[0]), shape_of(node)
    if lx is None or in_shape is None or out_shape is None:
        return None
    d = lx.dim + len(out_shape) - len(in_shape)
    if out_shape[d] != in_shape[lx.dim]:
        walk.freeze(lx, f"is expanded at {location(node)}")
        return None
    return lx.at(d)


@rule("slice", "narrow", "select", "index_select", "split", "split_with_sizes", "chunk", "unbind", "tensor_split")
def split(walk: Walk, node: Node) -> Any:
    """Slicing or splitting along another dimension keeps the channels; ``chunk`` along the channels couples its
    equal pieces (:meth:`Walk.cut`); any other split along the channels freezes them."""
    name = op_name(node)
    a = bind(node)
    x = a.get("self", a.get("input"))
    lx = walk.label(x)
    in_shape = shape_of(x)
    val = node.meta.get("val")
    if lx is None or in_shape is None:
        return [None] * len(val) if isinstance(val, list | tuple) else None
    dim = norm_dim(int(a.get("dim", 0)), len(in_shape))
    if dim == lx.dim:
        out_shape = shape_of(node) if isinstance(val, torch.Tensor) else None
        if name == "slice" and out_shape == in_shape:
            return lx  # x[:, :] — the whole dimension
        if name == "chunk" and isinstance(val, list | tuple) and len(val) == int(a["chunks"]):
            # Equal pieces in the child too: couple them (what split_with_sizes or split by a size does to a child
            # depends on whether the sizes follow the channels, which the graph cannot tell: those stay frozen).
            block = walk.cut(lx, len(val), f"is chunked into pieces that cannot be lined up at {location(node)}")
            return [block] * len(val) if block is not None else [None] * len(val)
        walk.freeze(lx, f"is split or sliced along channels at {location(node)}")
        return [None] * len(val) if isinstance(val, list | tuple) else None
    out = lx.at(lx.dim - 1) if name in ("select", "unbind") and dim < lx.dim else lx
    return [out] * len(val) if isinstance(val, list | tuple) else out


@rule("cat", "concat", "concatenate")
def cat(walk: Walk, node: Node) -> Label | None:
    """Concatenation along the channels lays the groups side by side; along another dimension it couples them."""
    a = bind(node)
    tensors = [t for t in a["tensors"] if isinstance(t, Node)]
    shapes = [shape_of(t) for t in tensors]
    labels = [walk.label(t) for t in tensors]
    if not any(labels) or any(s is None for s in shapes):
        return None
    n = len(shapes[0])  # type: ignore[arg-type]
    dim = norm_dim(int(a.get("dim", 0)), n)
    present = [lab for lab in labels if lab is not None]
    if all(lab.dim == dim for lab in present):
        runs: list[Run] = []
        for lab, shape in zip(labels, shapes, strict=True):
            if lab is not None:
                runs += lab.runs
            elif shape[dim]:  # type: ignore[index]
                runs.append(Run(None, shape[dim]))  # type: ignore[index]
        return Label(dim, tuple(runs))
    if len(present) == len(labels) and len({lab.dim for lab in present}) == 1:
        for other in present[1:]:
            if not walk.unify(present[0], other, f"is concatenated along another dimension at {location(node)}"):
                return None
        return present[0]
    walk.freeze(present, f"is concatenated with unlabelled tensors at {location(node)}")
    return None
