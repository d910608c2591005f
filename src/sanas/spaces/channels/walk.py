"""The graph walk: one pass over an exported ATen graph, labelling every tensor's channel dimension.

:class:`Walk` holds what the walk has found so far — the :class:`~sanas.spaces.channels.groups.Label` of every
node, where each parameter's and buffer's dimensions get their channels, the MACs of every conv and linear call —
and the helpers the op rules (:mod:`sanas.spaces.channels.rules`) act through: read a label, assign a label to a
parameter's dimension, couple two labels, freeze. Its loop hands every ``call_function`` node to the rule of its
ATen op; an op with no rule freezes every group that flows into it, and so does the model's output.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.fx import Node

from sanas.spaces.channels.groups import Groups, Label, Run

#: Follows the channels through one ATen op: reads its inputs' labels, records what it learns in the walk, and
#: returns the output's label (``None``: channels no search changes; a list for an op returning several tensors).
Rule = Callable[["Walk", Node], Any]


@dataclass(frozen=True)
class OpRule:
    """A rule and when it runs: ``creates`` (layers that create groups: conv, linear) runs on every call of the op;
    otherwise the rule runs only when a searchable channel flows in."""

    apply: Rule
    creates: bool = False


# --- reading a node ---------------------------------------------------------------------------------------------
def bind(node: Node) -> dict[str, Any]:
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


def shape_of(value: Any) -> tuple[int, ...] | None:
    """The shape of a tensor node (or of a tensor), ``None`` for anything else."""
    v = value.meta.get("val") if isinstance(value, Node) else value
    if isinstance(v, torch.Tensor):
        return tuple(int(s) for s in v.shape)
    return None


def norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def location(node: Node) -> str:
    """The module a node runs in, for the reasons groups are frozen."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return path.removeprefix("L['self'].") or "the model"
    return "the model's forward"


def op_name(node: Node) -> str:
    """The ATen op's name without its overload (``conv2d``), ``""`` for a target that is no ATen op."""
    target = node.target
    return target.overloadpacket.__name__ if isinstance(target, torch._ops.OpOverload) else ""


def outputs(node: Node, label: Label | None) -> Any:
    """``label`` for a single-output op; for an op returning several tensors, the label for the first."""
    val = node.meta.get("val")
    if isinstance(val, list | tuple):
        return [label] + [None] * (len(val) - 1)
    return label


def _nodes(value: Any) -> list[Node]:
    if isinstance(value, Node):
        return [value]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _nodes(v)]
    return []


class Walk:
    """One pass over an exported graph, labelling every tensor's channel dimension with the op ``rules``."""

    def __init__(self, model: nn.Module, program: torch.export.ExportedProgram,
                 rules: Mapping[str, OpRule]) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.rules = rules
        self.groups = Groups()
        sig = program.graph_signature
        self.tensor_of = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}  # placeholder name -> fqn
        self.env: dict[Node, Any] = {}
        #: fqn -> {dim: (label, reads)}: where each parameter's or buffer's dimensions get their channels.
        self.dims: dict[str, dict[int, tuple[Label, bool]]] = {}
        self.assigned_by: dict[str, set[Node]] = {}
        #: (factor, operands): the MACs of one conv or linear call are factor × the product of the operands'
        #: widths (a label, or a fixed int).
        self.macs: list[tuple[int, list[Label | int]]] = []
        self.graph = program.graph

    # -- what the rules use ----------------------------------------------------------------------------------
    def label(self, value: Any) -> Label | None:
        """The label of a node's channel dimension, ``None`` when no searchable channel flows through it."""
        out = self.env.get(value) if isinstance(value, Node) else None
        return Label(out.dim, self.groups.resolve(out.runs)) if isinstance(out, Label) else None

    def freeze(self, value: Any, reason: str) -> None:
        """Freeze every group in ``value``: a label, a node, or a list of them."""
        if isinstance(value, Label):
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

    def unify(self, a: Label, b: Label, reason: str) -> bool:
        """Couple two labels position by position, refining groups whose runs do not line up
        (:meth:`~sanas.spaces.channels.groups.Groups.align`); ``False`` (and both frozen) when they cannot be."""
        why = self.groups.align(a.runs, b.runs)
        if why:
            if why == "fixed":
                reason = f"{reason} (combined with channels no search changes)"
            self.freeze(a, reason)
            self.freeze(b, reason)
            return False
        return True

    def cut(self, label: Label, pieces: int, reason: str) -> Label | None:
        """Split ``label`` into ``pieces`` equal blocks of positions and couple the blocks (channel ``j`` of every
        block is one channel): the label of one block, or ``None`` (and ``label`` frozen) when they cannot be.

        Why couple them: an op that splits a dimension into equal blocks (``chunk``, a channel shuffle's view)
        splits the child's dimension into equal blocks too, so each block must keep as many channels, and a
        block's channel ``j`` must stay in line with the others'."""
        size = sum(r.channels * r.repeat for r in label.runs)
        if pieces < 1 or size % pieces:
            self.freeze(label, reason)
            return None
        step, blocks = size // pieces, []
        runs = list(label.runs)
        for _ in range(pieces):
            block: list[Run] = []
            need = step
            while need:
                run = runs.pop(0)
                length = run.channels * run.repeat
                if length > need:  # this run straddles two blocks: cut its group where the block ends
                    if need % run.repeat:
                        self.freeze(label, reason)
                        return None
                    k = need // run.repeat
                    if run.group is None:
                        runs.insert(0, Run(None, run.channels - k, run.repeat))
                        run = Run(None, k, run.repeat)
                    else:
                        self.groups.refine(run.group, [(k, 1, f"[:{k}]"), (run.channels - k, 1, f"[{k}:]")])
                        runs = list(self.groups.resolve([run, *runs]))
                        continue
                block.append(run)
                need -= run.channels * run.repeat
            blocks.append(block)
        for other in blocks[1:]:
            if not self.unify(Label(label.dim, tuple(blocks[0])), Label(label.dim, tuple(other)), reason):
                self.freeze(label, reason)
                return None
        return Label(label.dim, self.groups.resolve(blocks[0]))

    def fqn(self, value: Any) -> str | None:
        """The name of the parameter or buffer a node is, ``None`` when it is none."""
        return self.tensor_of.get(value.name) if isinstance(value, Node) and value.op == "placeholder" else None

    def owner(self, fqn: str) -> nn.Module | None:
        return self.modules.get(fqn.rpartition(".")[0])

    def assign(self, fqn: str, dim: int, label: Label, reads: bool, node: Node) -> None:
        """Dimension ``dim`` of parameter or buffer ``fqn`` has the channels ``label`` (``reads``: the layer reads
        them, as a conv's input channels)."""
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
                shape = shape_of(node)
                if isinstance(out, Label) and out.dim == 1 and shape is not None and len(shape) > 2:
                    for run in self.groups.resolve(out.runs):
                        if run.group is not None:
                            self.groups.resolutions[run.group].add(shape[2:])
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
        """The label(s) of one call's output: its op's rule, or freeze what flows into an op without one."""
        target = node.target
        if target is operator.getitem:
            src, i = node.args
            value = self.env.get(src)  # type: ignore[arg-type]
            return value[i] if isinstance(value, list | tuple) and isinstance(i, int) and i < len(value) else None
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) and not (isinstance(val, list | tuple) and
                                                      any(isinstance(v, torch.Tensor) for v in val)):
            return None  # sizes, asserts, scalars: nothing to label
        name = op_name(node)
        rule = self.rules.get(name)
        if rule is not None and rule.creates:
            return rule.apply(self, node)
        if not any(self.label(a) for a in _nodes([*node.args, *node.kwargs.values()])):
            return None  # nothing searchable flows in: the output's channels are fixed
        if not name:
            self.freeze_inputs(node, f"goes through {getattr(target, '__name__', target)} at {location(node)}")
            return None
        if rule is None:
            self.freeze_inputs(node, f"goes through aten.{name} at {location(node)}, which sanas cannot follow "
                                     f"channel-wise")
            return None
        return rule.apply(self, node)
