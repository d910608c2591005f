"""Channel groups of any network, found by tracing it: which tensor dimensions must shrink together.

:func:`trace_channels` runs ``torch.export`` on ``model(example_input)`` (its first sample, as a batch of
:data:`TRACE_BATCH`: what it finds does not depend on the example's batch) and follows every channel through the
ATen graph. A convolution or linear layer *creates* a group (its output channels); BatchNorms, depthwise convs,
activations, pooling and the like carry it on; a residual ``add`` (or ``mul``) *couples* the groups it combines
(channel ``j`` of one with channel ``j`` of the other, so they become one group), cutting a group in parts where the
two sides' groups do not line up (a conv's 16 channels added to a ghost module's 8 and their 8 cheap copies);
``cat`` lays groups side by side; a flatten before a linear layer repeats each channel H·W times; ``chunk`` and a
channel shuffle (``view(b, g, c // g, h, w)``, transpose, view back) couple their equal blocks, which then shrink in
lockstep. The result is a :data:`~sanas.spaces.inherit.Layout`:
for every parameter and buffer, which group each position of each dimension belongs to — the same description
:func:`~sanas.spaces.inherit.inherit_state` uses to build a narrower (or wider) child from trained weights.

Whatever the tracer does not understand is *frozen* (never searched), never guessed: an op it has no rule for
(``split``, ``layer_norm``, a matmul, a grouped conv...) freezes every group that flows into it, and so does the
model's output (the classifier keeps its classes). Frozen groups keep their width; the reason is recorded.

The modules, in the order they import each other: :mod:`~sanas.spaces.channels.groups` (labels, runs, the
union-find of groups), :mod:`~sanas.spaces.channels.walk` (the pass over the graph and the helpers rules use),
:mod:`~sanas.spaces.channels.rules` (one rule per family of ATen ops, and the table of them) and
:mod:`~sanas.spaces.channels.trace` (export, :func:`trace_channels`, :class:`ChannelGraph`, :func:`export_program`).
"""

from sanas.spaces.channels.groups import ChannelGroup
from sanas.spaces.channels.trace import TRACE_BATCH, ChannelGraph, export_program, trace_channels

__all__ = ["TRACE_BATCH", "ChannelGraph", "ChannelGroup", "export_program", "trace_channels"]
