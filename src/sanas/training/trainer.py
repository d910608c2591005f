"""The trainer: one network, its data and recipe, one epoch at a time, checkpointable (what every training of
sanas runs: candidates, finalists, final models, the parent).

Everything lives on the training device: the uint8 images, a seeded ``randperm`` shuffle, the augmentation.
Streamed images (:mod:`sanas.training.stream`) are the one exception: the shuffle is drawn the same way, and the
epoch's batches of it are read from their image cache a few steps ahead and copied to the device, so both paths
train on the same batches.
The learning rate follows a cosine from ``learning_rate`` to 0 over the whole run, stepped after every
batch (so it reaches 0 exactly at the last step; PaddleSlim steps it per epoch — or, after its Paddle 2
port, never). Drop path is ``drop_path_prob · epoch / retain_epoch`` with epochs counted from 0, as in DARTS.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from sanas.spaces import SearchSpace
from sanas.training.augment import Augment, normalize
from sanas.training.data import TrainingData
from sanas.training.distributed import (
    Launch,
    all_reduce_sum,
    check_launch,
    convert_sync_batchnorm,
    rank_seed,
    unused_parameters,
)
from sanas.training.recipe import Recipe, no_teacher
from sanas.training.stream import StreamedImages

__all__ = ["EpochMetrics", "Progress", "Trainer", "TrainingFailed"]

Progress = Literal["auto", "bar", "lines", "none"]


class TrainingFailed(RuntimeError):
    """A candidate cannot be trained (non-finite loss, out of memory, too large); ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class EpochMetrics:
    """What one epoch measured. Accuracies are fractions in [0, 1].

    ``epoch`` counts from 0; ``lr`` and ``drop_path_prob`` are the values at the epoch's start; ``train_*``
    averages over the epoch's augmented batches (train mode, drop path on; the loss is the training objective,
    distillation's term included when there is one); ``val_*`` is the reward split in
    eval mode after the epoch; ``seconds`` covers both.
    """

    epoch: int
    lr: float
    drop_path_prob: float
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Reporter:
    """Progress output: a rich bar, one compact line per epoch, or nothing."""

    def __init__(self, mode: Progress, label: str, epochs: int) -> None:
        if mode not in ("auto", "bar", "lines", "none"):
            raise ValueError(f"progress is {mode!r}, expected 'auto', 'bar', 'lines' or 'none'")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.label, self.epochs = mode, label, epochs
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Reporter:
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                                 console=Console(stderr=True), transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        """A pass of ``steps`` batches starts in epoch ``epoch`` (from 0) of the run."""
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(f"{self.label} epoch {epoch + 1}/{self.epochs}", total=steps,
                                            status="")

    def advance(self, done: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=f"loss {loss:.3f}")

    def end_epoch(self, m: EpochMetrics, done: float) -> None:
        """Print ``m``; ``done``: the run's epochs done after it (a fraction after a pass that ends mid-epoch, as
        an inherited candidate's checks do)."""
        if self.mode == "none":
            return
        line = (f"{self.label} epoch {round(done, 2):g}/{self.epochs}  lr {m.lr:.4g}  train loss {m.train_loss:.3f} "
                f"top1 {100 * m.train_top1:.1f}%  val loss {m.val_loss:.3f} top1 {100 * m.val_top1:.2f}% "
                f"top5 {100 * m.val_top5:.1f}%  {m.seconds:.1f}s")
        if self._bar is not None:
            self._bar.console.print(line)
        else:
            print(line, file=sys.stderr, flush=True)


#: Why bf16 autocast on CPU trains in the default memory layout (printed when a recipe asks for both).
CPU_BF16_CHANNELS_LAST_NOTE = (
    "note: bf16 on CPU trains with contiguous tensors, not channels_last: torch 2.13's oneDNN depthwise-conv "
    "backward in that combination intermittently returns NaN weight gradients")


#: Strided convs with fewer input channels than this run contiguous on CPU (see _avoid_cpu_channels_last_crash).
CPU_CHANNELS_LAST_MIN_STRIDED_IN_CHANNELS = 16


def _avoid_cpu_channels_last_crash(net: nn.Module) -> None:
    """Run strided convs with fewer than 16 input channels in the default layout on CPU.

    The rule: oneDNN's 1×1 backward-weights kernel for a strided conv copies its channels_last input into a
    workspace with a stride of one input-channel block — 8 channels with AVX2, 16 with AVX-512 — where the
    workspace holds only the real channel count. With fewer input channels than a block it writes past the
    workspace: wrong weight gradients, a spinning thread, or a corrupted heap that kills the process later
    (``free(): invalid size``, SIGSEGV, SIGABRT — the exit 139/134 of a 5-cell, 4-channel DartsSpace at batch 25
    or 27, whose 8-wide ``FactorizedReduce`` is below the AVX-512 block). Measured with torch 2.13 on AVX2: wrong
    gradients or a crash for 2–7 input channels at every batch size, exact results from 8 (uxlfoundation/oneDNN
    #6035). Stride-1 and depthwise convs were exact at every channel count, batch size and map size tried. The
    threshold is the larger block, whatever this CPU has; these convs are tiny, so running them contiguous costs
    nothing measurable.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels < CPU_CHANNELS_LAST_MIN_STRIDED_IN_CHANNELS and \
                max(m.stride) > 1:
            # clone, not .contiguous(): a 1×1 kernel in channels_last strides already counts as contiguous.
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            m.register_forward_pre_hook(lambda _m, args: (args[0].contiguous(), *args[1:]))


class Trainer:
    """One network being trained under a :class:`Recipe`: build, train an epoch, evaluate, save, restore.

    Both :func:`evaluate_candidate` and :func:`sanas.training.train_final` drive it one epoch at a time.

    >>> from sanas import get_space
    >>> from sanas.training import prepare_data
    >>> space = get_space("DartsSpace", layers=3, filter_num=[4, 8, 16], init_channels=4, auxiliary=False)
    >>> data = prepare_data("synthetic", train_size=40, test_size=10)
    >>> t = Trainer(space, space.init_tokens(), data, Recipe(retain_epoch=2, batch_size=16, device="cpu"))
    >>> t.run_epoch().epoch
    0
    """

    def __init__(self, space: SearchSpace, tokens: Sequence[int], data: TrainingData, recipe: Recipe,
                 parent: nn.Module | None = None, launch: Launch | None = None, sync_bn: bool = False) -> None:
        self.tokens = space.validate(tokens)
        self.recipe = recipe
        #: The data-parallel job this process belongs to (``None``: a single process). See training.distributed.
        self.launch = launch
        self.device = recipe.resolve_device() if launch is None else launch.device(recipe.resolve_device())
        if launch is not None:
            check_launch(launch.world_size, recipe.batch_size, launch.backend, self.device.type == "cuda")
        self.data = data.to(self.device)
        if self.data.in_channels != getattr(space, "in_channels", self.data.in_channels):
            raise ValueError(f"the space expects {space.in_channels} input channels, the {data.dataset.name} "
                             f"images have {self.data.in_channels}")
        if self.data.num_classes > getattr(space, "num_classes", self.data.num_classes):
            raise ValueError(f"the space has {space.num_classes} classes, the {data.dataset.name} labels have "
                             f"{self.data.num_classes}")
        self.bf16 = recipe.bf16 if recipe.bf16 is not None else self.device.type == "cuda"
        channels_last = recipe.channels_last
        if channels_last and self.bf16 and self.device.type == "cpu":
            print(CPU_BF16_CHANNELS_LAST_NOTE, file=sys.stderr, flush=True)
            channels_last = False
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(recipe.seed)  # same seed, same initial weights, whatever the device
        if recipe.distill > 0 and parent is None:
            raise ValueError(no_teacher(recipe.distill, "there is no parent"))
        self.inherited = recipe.evaluation == "inherit"
        if self.inherited:
            if parent is None:
                raise ValueError("the inherit evaluation needs a trained parent network (parent=...)")
            net = space.inherit(parent, self.tokens, space.resolve_importance(recipe.importance))
            if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
                raise ValueError(f"the {type(net).__name__} network has no BatchNorm layer: the inherit evaluation "
                                 f"re-estimates BatchNorm statistics; use the scratch evaluation")
        else:
            net = space.token2arch(self.tokens)
        self._check_fits(net)
        if launch is not None and sync_bn:
            net = convert_sync_batchnorm(net, self.device)
        self.net: nn.Module = net.to(self.device, memory_format=self.memory_format)
        if channels_last and self.device.type == "cpu":
            _avoid_cpu_channels_last_crash(self.net)
        model: nn.Module = self.net
        if launch is not None:
            from torch.nn.parallel import DistributedDataParallel

            # Rank 0's initial weights and buffers reach every rank here; gradients are averaged in backward.
            # A parameter no step reaches (an auxiliary head after the last cell, or one the loss ignores at
            # aux_weight 0) would stall DDP's reduction: found once, with one probing step that changes nothing.
            x, y = (t[:2] for t in self.data.train())
            x = x.read().to(self.device) if isinstance(x, StreamedImages) else x
            x = normalize(x, self.data.dataset.mean, self.data.dataset.std).contiguous(memory_format=self.memory_format)
            unused = unused_parameters(self.net, x, lambda out: self._objective(out, y, "sum")[0])
            model = DistributedDataParallel(self.net, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None, find_unused_parameters=bool(unused))
        self.model = torch.compile(model) if recipe.compile else model
        lr = recipe.finetune_lr if self.inherited else recipe.learning_rate
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.train_images, self.train_labels = self.data.train()
        self.world_size = 1 if launch is None else launch.world_size
        self.steps_per_epoch = recipe.steps_per_epoch(len(self.train_labels))
        if self.steps_per_epoch == 0 or len(self.train_labels) < 2 * self.world_size:
            raise ValueError(f"{len(self.train_labels)} training images cannot fill one batch; need at least "
                             f"{2 * self.world_size}" + (" (2 per process)" if launch is not None else ""))
        #: Optimizer steps of the whole run (a fractional ``retain_epoch`` ends inside an epoch), and done so far.
        self.total_steps = recipe.total_steps(len(self.train_labels))
        self.steps_done = 0
        #: Distillation's teacher: a frozen copy of the parent in eval mode, on the training device in the
        #: network's memory format (the caller's module is untouched); ``None`` when ``recipe.distill`` is 0 or
        #: there is no step to distil (``retain_epoch=0``: BatchNorm re-estimation only).
        self.teacher: nn.Module | None = None
        if recipe.distill > 0 and self.total_steps > 0:
            teacher = copy.deepcopy(parent).to(self.device, memory_format=self.memory_format)  # type: ignore[union-attr]
            teacher.requires_grad_(False).eval()
            if channels_last and self.device.type == "cpu":
                _avoid_cpu_channels_last_crash(teacher)
            self.teacher = teacher
        self._order: torch.Tensor | None = None
        self._position = 0
        #: Streamed images: the current shuffle's batches, being read ahead (see _next_batch).
        self._stream: Iterator[torch.Tensor] | None = None
        self._global_batch = 0
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(1, self.total_steps), eta_min=0.0)
        # One generator drives shuffling and augmentation, on the device so no host round trips are needed.
        self.generator = torch.Generator(self.device).manual_seed(recipe.seed)
        # Data-parallel: shuffling stays on that generator (the same on every rank: one global batch order);
        # augmentation draws from a generator of this rank's own, reseeded every epoch (see _augment_generator).
        self._aug_generator = None if launch is None else torch.Generator(self.device)
        ds = self.data.dataset
        self.augment = Augment.for_size(ds.mean, ds.std, ds.image_size, cutout=recipe.cutout)
        self.epoch = 0
        self.metrics: list[EpochMetrics] = []

    def _check_fits(self, net: nn.Module) -> None:
        if self.device.type != "cuda":
            return
        # Weights, gradients and momentum alone, before any activation: a floor, not an estimate.
        need = 3 * sum(p.numel() * p.element_size() for p in net.parameters())
        free, _ = torch.cuda.mem_get_info(self.device)
        if need > free:
            raise TrainingFailed(f"too large for {self.device}: weights, gradients and momentum need "
                                 f"{need / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free")

    @property
    def channels_last(self) -> bool:
        """Whether the network and its batches are channels_last (the recipe's choice, unless bf16 on CPU)."""
        return self.memory_format == torch.channels_last

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def drop_path_prob(self) -> float:
        """Drop-path probability of the current epoch: DARTS' ramp from scratch; none while fine-tuning."""
        if self.inherited:
            return 0.0
        return self.recipe.drop_path_prob * self.epoch / self.recipe.retain_epoch

    def _next_batch(self) -> torch.Tensor:
        """Indices of the next training batch; a new seeded shuffle starts every ``steps_per_epoch`` batches.
        Data-parallel: this rank's slice of the global batch (the slices of all ranks are the global batch).
        Every rank draws the same shuffle (the generator is seeded alike and checkpointed)."""
        if self._order is None or self._position >= self.steps_per_epoch:
            self._order = torch.randperm(len(self.train_labels), generator=self.generator, device=self.device)
            self._position = 0
            if isinstance(self.train_images, StreamedImages):  # read this shuffle's batches ahead, in order
                order = self._order.cpu()
                self._stream = self.train_images.batches(
                    (self._batch_at(order, p)[0] for p in range(self.steps_per_epoch)), self.device)
        idx, global_batch = self._batch_at(self._order, self._position)
        self._position += 1
        if self.launch is not None:
            self._global_batch = global_batch
        return idx

    def _batch_at(self, order: torch.Tensor, position: int) -> tuple[torch.Tensor, int]:
        """(this rank's indices, the global batch size) of batch ``position`` of the shuffle ``order``."""
        b = self.recipe.batch_size
        idx = order[position * b:(position + 1) * b]
        if self.launch is None:
            return idx, len(idx)
        # A last partial batch too small to give every rank two images (BatchNorm needs them) is topped up
        # with the epoch's first images, so that an epoch has as many steps at every world size.
        short = 2 * self.world_size - len(idx)
        if short > 0:
            idx = torch.cat([idx, order[:short]])
        return idx.tensor_split(self.world_size)[self.launch.rank], len(idx)

    @torch.no_grad()
    def reestimate_bn(self, batches: int) -> None:
        """Recompute every BatchNorm's running statistics from ``batches`` training batches (no augmentation,
        train-mode forward, no gradients), as a cumulative average over all of them.

        A child cut from a parent inherits statistics of channels that no longer sum the same inputs; scored
        with them it is near chance and the ranking of children says nothing (EagleEye's *adaptive BN*). The
        batches are drawn from the trainer's own seeded generator. ``batches=0`` keeps the inherited statistics
        as they are (resetting them and then seeing no batch would leave mean 0 / variance 1: a copy of a trained
        parent would score at chance).
        """
        if batches == 0:
            return
        bns = [m for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch counts the same
        self.net.train()
        if hasattr(self.net, "set_drop_path_prob"):
            self.net.set_drop_path_prob(0.0)
        ds = self.data.dataset
        n, b = len(self.train_labels), self.recipe.batch_size
        order = torch.randperm(n, generator=self.generator, device=self.device)
        position = 0
        picked = []
        for _ in range(batches):
            if position + 2 > n:
                order, position = torch.randperm(n, generator=self.generator, device=self.device), 0
            picked.append(order[position:position + b])
            position += b
        for images in self._images(self.train_images, picked):
            x = normalize(images, ds.mean, ds.std).contiguous(memory_format=self.memory_format)
            with self._autocast():
                self.model(x)
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum

    def train_epoch(self, reporter: _Reporter | None = None, steps: int | None = None) -> tuple[float, float]:
        """Train one epoch, or ``steps`` batches; returns (mean loss, top-1).

        Without ``steps``: one epoch, or what is left of the run if that is less. Raises
        :class:`TrainingFailed` on a non-finite loss.
        """
        r = self.recipe
        ds = self.data.dataset
        self.net.train()
        if hasattr(self.net, "set_drop_path_prob"):
            self.net.set_drop_path_prob(self.drop_path_prob())
        if steps is None:
            steps = min(self.steps_per_epoch, self.total_steps - self.steps_done)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        augment_generator = self.generator
        if self._aug_generator is not None and self.launch is not None:
            augment_generator = self._aug_generator.manual_seed(rank_seed(r.seed, self.launch.rank, self.epoch))
            # The drop-path masks come from the global generator: this rank's own stream, reseeded every epoch
            # (a checkpoint holds rank 0's random state only).
            torch.manual_seed(rank_seed(r.seed, self.launch.rank, self.epoch, "drop_path"))
        if reporter is not None:
            reporter.start_epoch(self.steps_done // self.steps_per_epoch, steps)
        # Checking for NaN needs a device sync; on CUDA do it every few batches, on CPU it is free.
        check_every = 1 if self.device.type == "cpu" else 20
        for step in range(steps):
            idx = self._next_batch()
            images = self.train_images[idx] if self._stream is None else next(self._stream)
            if r.augment:
                x = self.augment(images, augment_generator, channels_last=self.channels_last)
            else:
                x = normalize(images, ds.mean, ds.std).contiguous(memory_format=self.memory_format)
            y = self.train_labels[idx]
            with self._autocast():
                teacher = None
                if self.teacher is not None:
                    with torch.no_grad():  # not inference_mode: its tensors cannot enter the student's autograd
                        teacher = self.teacher(x)
                loss, logits = self._objective(self.model(x), y, teacher=teacher)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), r.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += (loss.detach() * self._global_batch / self.world_size if self.launch is not None
                         else loss.detach() * len(y))
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            self.steps_done += 1
            if (step + 1) % check_every == 0 or step + 1 == steps:
                mean_loss = float(loss_sum) / seen
                if not math.isfinite(mean_loss):
                    raise TrainingFailed(f"non-finite training loss ({mean_loss}) at epoch {self.epoch + 1}, "
                                         f"step {step + 1}; lr {self.optimizer.param_groups[0]['lr']:.4g}")
                if reporter is not None:
                    reporter.advance(step + 1, mean_loss)
        if self.launch is not None:  # the epoch's metrics over the global batches, as one process would report
            loss_sum, correct, total = all_reduce_sum(loss_sum, correct, torch.tensor(float(seen)))
            seen = int(total)
        return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)

    def _objective(self, out: Any, y: torch.Tensor, reduction: str = "batch", teacher: Any = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of one training forward's output ``out``: cross-entropy, plus ``aux_weight`` times the
        auxiliary head's. sanas' networks return ``(logits, aux_logits)`` in training mode, any other module just
        logits. ``reduction="batch"``: the batch mean; data-parallel, this rank's share of the global batch's mean
        (its sum over the global batch size, times the world size that DistributedDataParallel averages over), so
        the averaged gradient is the one-process gradient of the global batch even when the slices are uneven.
        ``"sum"``: the plain sum.

        With the ``teacher``'s output on the same batch (distillation, ``recipe.distill = α > 0``) the main head's
        term is ``(1 − α)·CE + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))``, the KL reduced like the
        cross-entropy (per sample: the batch mean, or this rank's share of it); the auxiliary head's stays CE."""
        logits, aux_logits = out if isinstance(out, tuple) else (out, None)

        def ce(z: torch.Tensor) -> torch.Tensor:
            if reduction == "sum":
                return F.cross_entropy(z.float(), y, reduction="sum")
            if self.launch is None:
                return F.cross_entropy(z.float(), y)
            return F.cross_entropy(z.float(), y, reduction="sum") * (self.world_size / self._global_batch)

        loss = ce(logits)
        if teacher is not None:
            alpha, t = self.recipe.distill, self.recipe.distill_temperature
            z_t = teacher[0] if isinstance(teacher, tuple) else teacher
            student = F.log_softmax(logits.float() / t, dim=1)
            target = F.log_softmax(z_t.float() / t, dim=1)
            if reduction == "sum":
                kl = F.kl_div(student, target, reduction="sum", log_target=True)
            elif self.launch is None:
                kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
            else:
                kl = F.kl_div(student, target, reduction="sum", log_target=True) * (self.world_size /
                                                                                   self._global_batch)
            loss = (1 - alpha) * loss + (alpha * t * t) * kl
        if aux_logits is not None and self.recipe.aux_weight > 0:
            loss = loss + self.recipe.aux_weight * ce(aux_logits)
        return loss, logits

    def _images(self, images: torch.Tensor | StreamedImages, positions: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The uint8 images at each of ``positions`` on the device: indexed there, or streamed (read ahead)."""
        if isinstance(images, StreamedImages):
            return images.batches(positions, self.device)
        return (images[p] for p in positions)

    @torch.inference_mode()
    def evaluate(self, images: torch.Tensor | StreamedImages, labels: torch.Tensor) -> tuple[float, float, float]:
        """(mean loss, top-1, top-5) of the network in eval mode on uint8 ``images`` (normalised only; a tensor on
        the device, or streamed). Data-parallel: each rank scores every ``world_size``-th image and the sums are
        combined."""
        self.net.eval()
        total = len(labels)
        images, labels = self._shard(images, labels)
        ds = self.data.dataset
        k = min(5, ds.num_classes)
        loss_sum = torch.zeros((), device=self.device)
        top1 = torch.zeros((), dtype=torch.long, device=self.device)
        topk = torch.zeros((), dtype=torch.long, device=self.device)
        eb = self.recipe.eval_batch_size
        if isinstance(images, StreamedImages):
            chunks = images.batches((torch.arange(s, min(s + eb, len(labels))) for s in range(0, len(labels), eb)),
                                    self.device)
        else:
            chunks = (images[s:s + eb] for s in range(0, len(labels), eb))
        for start, chunk in zip(range(0, len(labels), eb), chunks, strict=True):
            x = normalize(chunk, ds.mean, ds.std)
            x = x.contiguous(memory_format=self.memory_format)
            y = labels[start:start + eb]
            with self._autocast():
                # Eager even with compile: an eval graph would be one more (slow) compilation for a pass
                # that costs a fraction of an epoch.
                logits = self.net(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            best = logits.topk(k, dim=1).indices
            top1 += (best[:, 0] == y).sum()
            topk += (best == y[:, None]).any(dim=1).sum()
        if self.launch is not None:
            loss_sum, top1, topk = all_reduce_sum(loss_sum, top1, topk)
        n = max(total, 1)
        return float(loss_sum) / n, float(top1) / n, float(topk) / n

    def _shard(self, images: Any, labels: torch.Tensor) -> tuple[Any, torch.Tensor]:
        if self.launch is None:
            return images, labels
        return images[self.launch.rank::self.world_size], labels[self.launch.rank::self.world_size]

    def run_epoch(self, reporter: _Reporter | None = None, steps: int | None = None) -> EpochMetrics:
        """Train one epoch (or ``steps`` batches), then evaluate on the reward split; records and returns the
        metrics."""
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        drop = self.drop_path_prob()
        train_loss, train_top1 = self.train_epoch(reporter, steps)
        val_loss, val_top1, val_top5 = self.evaluate(*self.data.val())
        if not math.isfinite(val_loss):
            raise TrainingFailed(f"non-finite validation loss ({val_loss}) after epoch {self.epoch + 1}")
        m = EpochMetrics(self.epoch, lr, drop, train_loss, train_top1, val_loss, val_top1, val_top5,
                         time.perf_counter() - start)
        self.metrics.append(m)
        self.epoch += 1
        if reporter is not None:
            reporter.end_epoch(m, self.steps_done / self.steps_per_epoch)
        return m

    def reward(self) -> float:
        """Mean validation top-1 of the last two epochs (PaddleSlim's reward)."""
        if len(self.metrics) < 2:
            raise ValueError(f"the reward needs two epochs, {len(self.metrics)} trained")
        return (self.metrics[-1].val_top1 + self.metrics[-2].val_top1) / 2

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly here; only tensors and plain Python values (weights_only)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"epoch": self.epoch, "steps_done": self.steps_done, "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng,
                "metrics": [m.to_dict() for m in self.metrics]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["data"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.epoch = int(state["epoch"])
        self.steps_done = int(state.get("steps_done", self.epoch * self.steps_per_epoch))
        self._order = self._stream = None  # checkpoints are taken at epoch ends: the next batch starts a new shuffle
        self.metrics = [EpochMetrics(**m) for m in state["metrics"]]


