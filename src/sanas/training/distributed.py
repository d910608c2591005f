"""Data-parallel final training under torchrun (``torch.distributed.elastic``): the launch, its checks, and the
few collective helpers the trainer needs.

``torchrun --nproc-per-node N -m sanas.cli train ...`` (or ``sanas train --nproc N``, which starts torchrun's
elastic agent on this machine) runs one process per device. Each process reads the launch from the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) with
:func:`launch_from_env`; :func:`check_launch` refuses a launch that cannot work before anything is written. What
is the same as one process: the *global* batch (each rank trains on its ``1/world_size`` slice of the same
shuffled batch), the learning-rate schedule and the meaning of every metric (sums over all ranks). What differs
per rank, seeded every epoch from the recipe's seed, the rank and the epoch (so a resumed job draws the same,
at any world size): the augmentation draws and the drop-path masks (:func:`rank_seed`).

BatchNorm normalises each rank's slice with that slice's statistics unless ``sync_bn``: then every BatchNorm uses
the statistics of the whole global batch — PyTorch's ``SyncBatchNorm`` on CUDA, :class:`CPUSyncBatchNorm` (the
same arithmetic over gloo) on CPU, where PyTorch's own does not run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

__all__ = ["BACKENDS", "STREAMS", "CPUSyncBatchNorm", "Launch", "all_reduce_sum", "barrier", "check_launch",
           "convert_sync_batchnorm", "init_process_group", "launch_from_env", "rank_seed", "unused_parameters"]

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class Launch:
    """One process of a data-parallel job: its rank, the world size, its rank on this node, the backend."""

    rank: int
    world_size: int
    local_rank: int = 0
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics, exports and progress."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA recipe, else ``device``."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device


def launch_from_env(backend: str = "auto", cuda: bool = False,
                    environ: dict[str, str] | None = None) -> Launch | None:
    """The launch torchrun describes in the environment, or ``None`` outside torchrun (or a world of one).

    ``backend="auto"`` is NCCL for CUDA training and gloo on CPU.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        world, rank, local = int(env["WORLD_SIZE"]), int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError(f"torchrun's environment is malformed: WORLD_SIZE={env.get('WORLD_SIZE')!r}, "
                         f"RANK={env.get('RANK')!r}; expected integers") from None
    if world <= 1:
        return None
    if backend not in BACKENDS:
        raise ValueError(f"backend is {backend!r}, expected one of {', '.join(BACKENDS)}")
    return Launch(rank, world, local, ("nccl" if cuda else "gloo") if backend == "auto" else backend)


def check_launch(world_size: int, batch_size: int, backend: str, cuda: bool) -> None:
    """Refuse, with one line, a launch that cannot train: a global batch the world size does not divide (or that
    leaves a rank fewer than two images, which BatchNorm needs), NCCL without CUDA, an unknown backend."""
    if backend not in BACKENDS:
        raise ValueError(f"backend is {backend!r}, expected one of {', '.join(BACKENDS)}")
    if world_size < 1:
        raise ValueError(f"the world size is {world_size}, expected a positive number of processes")
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the world size {world_size}: the global "
                         f"batch is split evenly over the processes; use a multiple of {world_size}")
    if batch_size // world_size < 2:
        raise ValueError(f"batch_size {batch_size} over {world_size} processes leaves {batch_size // world_size} "
                         f"image per process; BatchNorm needs at least 2")
    if backend == "nccl" and not cuda:
        raise ValueError("backend 'nccl' needs CUDA devices, and this training runs on the CPU; use 'gloo' "
                         "(or 'auto')")


def init_process_group(launch: Launch, timeout_s: float = 600.0,
                       environ: dict[str, str] | None = None) -> None:
    """Join the job's process group through torchrun's store (``env://``); NCCL pins this rank's GPU first.

    The group's keys live under a prefix of their own for each restart of the job
    (``TORCHELASTIC_RESTART_COUNT``): torchrun's agent keeps one store across restarts, and a restarted gloo
    rank could otherwise read the address a killed rank published before it and fail to connect (seen with
    ``--max-restarts`` on PyTorch 2.13, about one restart in two).
    """
    env = os.environ if environ is None else environ
    if launch.backend == "nccl":
        torch.cuda.set_device(launch.local_rank)
    if dist.is_initialized():
        return
    timeout = timedelta(seconds=timeout_s)
    store, rank, world = next(dist.rendezvous("env://", launch.rank, launch.world_size, timeout=timeout))
    store = dist.PrefixStore(f"sanas/restart-{env.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group(launch.backend, store=store, rank=rank, world_size=world, timeout=timeout)


STREAMS = ("augment", "drop_path")


def rank_seed(seed: int, rank: int, epoch: int = 0, stream: str = "augment") -> int:
    """The seed of rank ``rank``'s ``stream`` draws (``"augment"``: crops, flips, cutout; ``"drop_path"``: the
    drop-path masks) in ``epoch``: distinct per rank, epoch and stream, a function of the recipe's seed alone, so
    a resumed job (at any world size) draws the same for the same rank and epoch.

    >>> rank_seed(0, 0) != rank_seed(0, 1) != rank_seed(1, 0) != rank_seed(0, 0, stream="drop_path")
    True
    """
    if stream not in STREAMS:
        raise ValueError(f"stream is {stream!r}, expected one of {', '.join(STREAMS)}")
    return (seed * 1_000_003 + rank * 7_919 + epoch * 104_729 + STREAMS.index(stream) * 15_485_863 + 1) % 2**63


def all_reduce_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """The sums over all ranks of ``values`` (one collective for all of them); the values as they are outside a
    process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    flat = torch.stack([v.detach().to(torch.float64).reshape(()) for v in values])
    dist.all_reduce(flat)
    return [flat[i].to(v.dtype) for i, v in enumerate(values)]


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class _AllReduceSum(torch.autograd.Function):
    """The sum over all ranks, differentiable: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole global batch, over any process group (gloo on
    CPU): each rank's sums of ``x`` and ``x²`` and its count are all-reduced (with autograd, so the gradient is
    the one of a single process on the global batch), then normalised as :class:`torch.nn.BatchNorm2d` would.
    Eval mode uses the running statistics, as usual."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or not self.track_running_stats, self.momentum or 0.0, self.eps)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        c = x.shape[1]
        shape = [1, c, *([1] * (x.dim() - 2))]
        # Two passes (the global mean, then the global sum of squared deviations), as exact as one process's
        # BatchNorm: E[x²] - E[x]² loses digits to cancellation.
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1)) if float(n) > 1 else var
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` with every BatchNorm synchronised over the process group: PyTorch's ``SyncBatchNorm`` on CUDA,
    :class:`CPUSyncBatchNorm` elsewhere. Weights and running statistics are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)

    def convert(module: nn.Module) -> nn.Module:
        out: Any = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
            out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
            if module.affine:
                with torch.no_grad():
                    out.weight.copy_(module.weight)
                    out.bias.copy_(module.bias)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
            out.train(module.training)
        for name, child in module.named_children():
            out.add_module(name, convert(child))
        return out

    return convert(net)


def unused_parameters(net: nn.Module, x: torch.Tensor, objective: Callable[[Any], torch.Tensor]) -> list[str]:
    """Names of ``net``'s trainable parameters that one training step on ``x`` leaves without a gradient
    (``objective`` maps the forward's output to the loss). The probe leaves no trace: the random state, every
    buffer (BatchNorm statistics) and every gradient are as before, and the network is back in its mode."""
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    saved_grads = [p.grad for _, p in params]
    buffers = {n: b.detach().clone() for n, b in net.named_buffers()}
    was_training = net.training
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            for _, p in params:
                p.grad = None
            net.train()
            objective(net(x)).backward()
            return [n for n, p in params if p.grad is None]
    finally:
        for (_, p), g in zip(params, saved_grads, strict=True):
            p.grad = g
        with torch.no_grad():
            for n, b in net.named_buffers():
                b.copy_(buffers[n])
        net.train(was_training)
