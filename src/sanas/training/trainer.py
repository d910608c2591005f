"""The seed's training recipe, one epoch loop, and :func:`evaluate_candidate`, what the search calls.

Everything lives on the training device: the uint8 images, a seeded ``randperm`` shuffle, the augmentation.
The learning rate follows a cosine from ``learning_rate`` to 0 over the whole run, stepped after every
batch (so it reaches 0 exactly at the last step; PaddleSlim steps it per epoch — or, after its Paddle 2
port, never). Drop path is ``drop_path_prob · epoch / retain_epoch`` with epochs counted from 0, as in DARTS.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from sanas.spaces import SearchSpace
from sanas.spaces.inherit import IMPORTANCE
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
from sanas.training.saved import load_model

__all__ = ["EVALUATIONS", "CandidateResult", "EpochMetrics", "Recipe", "StopCheck", "Trainer", "TrainingFailed",
           "check_points", "evaluate_candidate"]

Progress = Literal["auto", "bar", "lines", "none"]
#: How a candidate is evaluated: trained from scratch (PaddleSlim's protocol) or inherited from a trained parent.
EVALUATIONS = ("scratch", "inherit")
#: Epochs per candidate when the recipe does not say: PaddleSlim's 30 from scratch; an inherited candidate is
#: scored right after BatchNorm re-estimation (forward passes only), which ranked candidates as well as a quarter
#: epoch of fine-tuning or better (``benchmarks/score_fidelity.py``): the search screens many that way and
#: fine-tunes only its finalists (:mod:`sanas.runs.finalists`).
DEFAULT_EPOCHS: dict[str, int | float] = {"scratch": 30, "inherit": 0}
#: Distillation weight of a fine-tune from the parent when the recipe does not say (``benchmarks/final_curve.py``:
#: it raised the held-out top-1 of every fine-tune length measured).
DEFAULT_DISTILL = 0.5


class TrainingFailed(RuntimeError):
    """A candidate cannot be trained (non-finite loss, out of memory, too large); ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_teacher(distill: float, why: str) -> str:
    return (f"distill is {distill!r} but {why} to distil from: distillation needs --evaluation inherit with a "
            f"trained parent (--parent)")


@dataclass(frozen=True)
class Recipe:
    """How a candidate is trained. Defaults are PaddleSlim's DARTS demo (``sanas_darts_space.py``).

    ``retain_epoch`` is PaddleSlim's name for the epochs per candidate; from scratch it must be at least 2 because
    the reward averages the last two epochs (default 30).

    ``evaluation="inherit"`` starts each candidate from a trained parent instead (see :func:`evaluate_candidate`):
    ``bn_batches`` batches re-estimate BatchNorm, then ``retain_epoch`` epochs of fine-tuning (default 0: scored
    right after the re-estimation; any number >= 0) at ``finetune_lr`` (default: half of ``learning_rate``),
    cosine to 0, no drop path; channels are chosen by ``importance``; ``early_stop`` and ``stop_checks`` control
    the SA-aware early stop of fine-tuned candidates. The defaults are what ranked candidates best per unit of
    cost in ``benchmarks/rank_fidelity.py`` and ``benchmarks/score_fidelity.py``.

    ``device="auto"`` picks CUDA when available. ``bf16=None`` means
    bf16 autocast on CUDA only. ``channels_last`` pays off on CUDA and CPU alike; with ``bf16=True`` on CPU the
    trainer uses contiguous tensors instead (see ``CPU_BF16_CHANNELS_LAST_NOTE``). ``compile`` wraps the
    network in ``torch.compile`` (slow to start; on CPU it did not pay off). The learning rate follows a
    cosine from ``learning_rate`` to 0 stepped after every batch; drop path is
    ``drop_path_prob · epoch / retain_epoch``. ``augment=False`` trains on the normalised images alone (no crop,
    flip or cutout).

    ``distill`` (α in [0, 1]) distils from the trained parent while fine-tuning (inherit only:
    :func:`evaluate_candidate` and :func:`sanas.training.train_final`): the training loss becomes
    ``(1 − α)·CE(student, y) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))`` (Hinton et al.) with
    ``T = distill_temperature`` (default 4), the teacher being a frozen copy of the parent in eval mode that sees
    the same augmented batch; the auxiliary head keeps its plain cross-entropy. Default: :data:`DEFAULT_DISTILL`
    with ``evaluation="inherit"`` (measured in ``benchmarks/final_curve.py``), 0 from scratch (no parent).

    >>> Recipe(retain_epoch=2, batch_size=32).total_steps(100)
    8
    """

    batch_size: int = 96
    retain_epoch: int | float | None = None
    learning_rate: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    aux_weight: float = 0.4
    drop_path_prob: float = 0.2
    cutout: int = 16
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 256
    evaluation: str = "scratch"
    bn_batches: int = 20
    finetune_lr: float | None = None
    importance: str = "bn"
    early_stop: bool = True
    stop_checks: int = 2
    augment: bool = True
    distill: float | None = None
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation is {self.evaluation!r}, expected one of {', '.join(EVALUATIONS)}")
        if self.retain_epoch is None:  # frozen: defaults that depend on the evaluation are set this way
            object.__setattr__(self, "retain_epoch", DEFAULT_EPOCHS[self.evaluation])
        if self.finetune_lr is None and isinstance(self.learning_rate, int | float):
            object.__setattr__(self, "finetune_lr", self.learning_rate / 2)
        if self.distill is None:
            object.__setattr__(self, "distill", DEFAULT_DISTILL if self.evaluation == "inherit" else 0.0)
        if self.evaluation == "scratch":
            if (isinstance(self.retain_epoch, bool) or not isinstance(self.retain_epoch, int)
                    or self.retain_epoch < 2):
                raise ValueError(f"retain_epoch is {self.retain_epoch!r}, expected an integer >= 2 (the reward "
                                 f"averages the last two epochs)")
        elif (isinstance(self.retain_epoch, bool) or not isinstance(self.retain_epoch, int | float)
              or not math.isfinite(self.retain_epoch) or self.retain_epoch < 0):
            raise ValueError(f"retain_epoch is {self.retain_epoch!r}, expected a number of fine-tuning epochs >= 0 "
                             f"(fractions allowed; 0 = BatchNorm re-estimation only)")
        if isinstance(self.bn_batches, bool) or not isinstance(self.bn_batches, int) or self.bn_batches < 0:
            raise ValueError(f"bn_batches is {self.bn_batches!r}, expected an integer >= 0")
        if isinstance(self.stop_checks, bool) or not isinstance(self.stop_checks, int) or self.stop_checks < 1:
            raise ValueError(f"stop_checks is {self.stop_checks!r}, expected an integer >= 1")
        if self.importance not in IMPORTANCE:
            raise ValueError(f"importance is {self.importance!r}, expected one of {', '.join(IMPORTANCE)}")
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} is {value!r}, expected an integer >= 2 (BatchNorm needs two samples)")
        for name in ("learning_rate", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is {getattr(self, name)!r}, expected a positive number")
        if not self.finetune_lr > 0:  # type: ignore[operator]  # after learning_rate: it defaults to half of it
            raise ValueError(f"finetune_lr is {self.finetune_lr!r}, expected a positive number")
        for name in ("momentum", "weight_decay", "aux_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} is {getattr(self, name)!r}, expected a non-negative number")
        if not 0 <= self.drop_path_prob < 1:
            raise ValueError(f"drop_path_prob is {self.drop_path_prob!r}, expected a number in [0, 1)")
        if self.cutout < 0:
            raise ValueError(f"cutout is {self.cutout!r}, expected a non-negative size")
        if (isinstance(self.distill, bool) or not isinstance(self.distill, int | float)
                or not 0 <= self.distill <= 1):
            raise ValueError(f"distill is {self.distill!r}, expected a weight in [0, 1] (0 = off)")
        if (isinstance(self.distill_temperature, bool) or not isinstance(self.distill_temperature, int | float)
                or not math.isfinite(self.distill_temperature) or self.distill_temperature <= 0):
            raise ValueError(f"distill_temperature is {self.distill_temperature!r}, expected a temperature > 0")
        if self.distill > 0 and self.evaluation != "inherit":
            raise ValueError(_no_teacher(self.distill, f"the {self.evaluation} evaluation has no parent"))
        if self.device != "auto":
            torch.device(self.device)  # raises on nonsense like "gpu"

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r} but CUDA is not available; use 'cpu' or 'auto'")
        return device

    def total_steps(self, train_size: int) -> int:
        """Optimizer steps in the whole run for ``train_size`` training images (a fractional ``retain_epoch``
        rounds to the nearest step)."""
        return round(self.steps_per_epoch(train_size) * self.retain_epoch)

    def steps_per_epoch(self, train_size: int) -> int:
        # A last partial batch of one image is dropped: BatchNorm (and the aux head) cannot train on it. The
        # count does not depend on the world size of a data-parallel job (see Trainer._next_batch).
        full, rest = divmod(train_size, self.batch_size)
        return full + (1 if rest >= 2 else 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


@dataclass
class CandidateResult:
    """The outcome of :func:`evaluate_candidate`. ``reward`` is ``None`` when ``status == "failed"``."""

    tokens: list[int]
    status: Literal["ok", "failed"]
    reward: float | None
    reason: str = ""
    metrics: list[EpochMetrics] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    seconds: float = 0.0
    device: str = ""
    #: Inherit evaluation: ``[epochs fine-tuned, held-out top-1]`` at every check and at the end.
    curve: list[list[float]] = field(default_factory=list)
    #: Training epochs spent (fractional when fine-tuning); BatchNorm re-estimation batches run.
    epochs: float = 0.0
    bn_batches: int = 0
    #: Stopped early by the early-stop rule (``reward`` is then the partial reward at the stop).
    stopped: bool = False
    threshold: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["metrics"] = [m.to_dict() for m in self.metrics]
        return out


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
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(f"{self.label} epoch {epoch + 1}/{self.epochs}", total=steps,
                                            status="")

    def advance(self, done: int, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=f"loss {loss:.3f}")

    def end_epoch(self, m: EpochMetrics) -> None:
        if self.mode == "none":
            return
        line = (f"{self.label} epoch {m.epoch + 1}/{self.epochs}  lr {m.lr:.4g}  train loss {m.train_loss:.3f} "
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
            raise ValueError(_no_teacher(recipe.distill, "there is no parent"))
        self.inherited = recipe.evaluation == "inherit"
        if self.inherited:
            if parent is None:
                raise ValueError("the inherit evaluation needs a trained parent network (parent=...)")
            net = space.inherit(parent, self.tokens, recipe.importance)
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
        self._global_batch = 0
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(1, self.total_steps), eta_min=0.0)
        # One generator drives shuffling and augmentation, on the device so no host round trips are needed.
        self.generator = torch.Generator(self.device).manual_seed(recipe.seed)
        # Data-parallel: shuffling stays on that generator (the same on every rank: one global batch order);
        # augmentation draws from a generator of this rank's own, reseeded every epoch (see _augment_generator).
        self._aug_generator = None if launch is None else torch.Generator(self.device)
        ds = self.data.dataset
        self.augment = Augment(ds.mean, ds.std, cutout=recipe.cutout)
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
        b = self.recipe.batch_size
        idx = self._order[self._position * b:(self._position + 1) * b]
        self._position += 1
        if self.launch is not None:
            # A last partial batch too small to give every rank two images (BatchNorm needs them) is topped up
            # with the epoch's first images, so that an epoch has as many steps at every world size.
            short = 2 * self.world_size - len(idx)
            if short > 0:
                idx = torch.cat([idx, self._order[:short]])
            self._global_batch = len(idx)
            idx = idx.tensor_split(self.world_size)[self.launch.rank]
        return idx

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
        for _ in range(batches):
            if position + 2 > n:
                order, position = torch.randperm(n, generator=self.generator, device=self.device), 0
            idx = order[position:position + b]
            position += b
            x = normalize(self.train_images[idx], ds.mean, ds.std).contiguous(memory_format=self.memory_format)
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
            reporter.start_epoch(self.epoch, steps)
        # Checking for NaN needs a device sync; on CUDA do it every few batches, on CPU it is free.
        check_every = 1 if self.device.type == "cpu" else 20
        for step in range(steps):
            idx = self._next_batch()
            if r.augment:
                x = self.augment(self.train_images[idx], augment_generator, channels_last=self.channels_last)
            else:
                x = normalize(self.train_images[idx], ds.mean, ds.std).contiguous(memory_format=self.memory_format)
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

    @torch.inference_mode()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
        """(mean loss, top-1, top-5) of the network in eval mode on uint8 ``images`` (normalised only).
        Data-parallel: each rank scores every ``world_size``-th image and the sums are combined."""
        self.net.eval()
        total = len(labels)
        images, labels = self._shard(images, labels)
        ds = self.data.dataset
        k = min(5, ds.num_classes)
        loss_sum = torch.zeros((), device=self.device)
        top1 = torch.zeros((), dtype=torch.long, device=self.device)
        topk = torch.zeros((), dtype=torch.long, device=self.device)
        for start in range(0, len(labels), self.recipe.eval_batch_size):
            x = normalize(images[start:start + self.recipe.eval_batch_size], ds.mean, ds.std)
            x = x.contiguous(memory_format=self.memory_format)
            y = labels[start:start + self.recipe.eval_batch_size]
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

    def _shard(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
            reporter.end_epoch(m)
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
        self._order = None  # checkpoints are taken at epoch ends: the next batch starts a new shuffle
        self.metrics = [EpochMetrics(**m) for m in state["metrics"]]


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class StopCheck(Protocol):
    """What the inherit evaluation asks of an early-stop rule (:class:`sanas.search.early_stop.StopRule`, learned
    from the search): the reward a candidate needs, and whether to stop it at check ``check``."""

    threshold: float

    def should_stop(self, check: int, val_top1: float, earlier: Sequence[float] = ()) -> bool: ...


def check_points(total_steps: int, checks: int) -> list[int]:
    """Optimizer steps after which an inherited candidate is scored before its end: ``checks`` evenly spaced
    points from 0 (right after BatchNorm re-estimation); none when there is no fine-tuning.

    >>> check_points(100, 2), check_points(3, 4), check_points(0, 2)
    ([0, 50], [0, 1, 2], [])
    """
    if total_steps <= 0:
        return []
    return sorted({(total_steps * i) // checks for i in range(checks)})


def _load_parent(parent: nn.Module | str | os.PathLike[str]) -> nn.Module:
    if isinstance(parent, nn.Module):
        return parent
    return load_model(parent)


def _finetune(trainer: Trainer, result: CandidateResult, reporter: _Reporter, stop: StopCheck | None) -> None:
    """The inherit evaluation: BatchNorm re-estimation, then fine-tuning with checks; fills ``result``."""
    r = trainer.recipe
    trainer.reestimate_bn(r.bn_batches)
    result.bn_batches = r.bn_batches
    images, labels = trainer.data.val()

    def score() -> float:
        top1 = trainer.evaluate(images, labels)[1]
        result.curve.append([trainer.steps_done / trainer.steps_per_epoch, top1])
        return top1

    for i, at in enumerate(check_points(trainer.total_steps, r.stop_checks)):
        if at > trainer.steps_done:
            trainer.run_epoch(reporter, steps=at - trainer.steps_done)
        top1 = score()
        if stop is not None and stop.should_stop(i, top1, [c[1] for c in result.curve[:-1]]):
            result.status, result.reward, result.stopped = "ok", top1, True
            return
    while trainer.steps_done < trainer.total_steps:
        trainer.run_epoch(reporter)
    result.status, result.reward = "ok", score()


def evaluate_candidate(tokens: Sequence[int], space: SearchSpace, data: TrainingData, recipe: Recipe | None = None,
                       progress: Progress = "auto", parent: nn.Module | str | os.PathLike[str] | None = None,
                       stop_rule: StopCheck | None = None) -> CandidateResult:
    """Evaluate ``tokens`` under ``recipe.evaluation`` and return the reward.

    ``"scratch"`` (PaddleSlim's protocol): train ``space.token2arch(tokens)`` for ``recipe.retain_epoch``
    epochs; ``reward = mean(val_top1[-2:])`` on ``data``'s held-out split. ``"inherit"``: the child of the
    trained ``parent`` (a network, or a folder written by ``sanas train``), BatchNorm re-estimated on
    ``recipe.bn_batches`` training batches, fine-tuned for ``recipe.retain_epoch`` epochs (fractions allowed, 0 =
    none) at ``recipe.finetune_lr``, distilled from the parent when ``recipe.distill > 0`` (see :class:`Recipe`);
    reward = held-out top-1 at the end. With a ``stop_rule``, it is scored at
    ``recipe.stop_checks`` points on the way and stops as soon as the rule says it cannot be accepted
    (``stopped=True``, reward = the top-1 at the stop). A candidate that cannot be trained —
    non-finite loss, out of memory, too large for the device — gives ``status="failed"`` with a ``reason``
    instead of raising; invalid tokens or settings still raise ``ValueError``.

    >>> from sanas import get_space
    >>> from sanas.training import prepare_data
    >>> space = get_space("DartsSpace", layers=3, filter_num=[4, 8, 16], init_channels=4, auxiliary=False)
    >>> data = prepare_data("synthetic", train_size=40, test_size=10)
    >>> result = evaluate_candidate(space.init_tokens(), space, data,
    ...                             Recipe(retain_epoch=2, batch_size=16, device="cpu"), progress="none")
    >>> result.status, 0.0 <= result.reward <= 1.0
    ('ok', True)
    """
    recipe = recipe or Recipe()
    tokens = space.validate(tokens)
    if recipe.evaluation == "inherit":
        if parent is None:
            raise ValueError("the inherit evaluation needs parent=: a trained network or a sanas train folder")
        parent = _load_parent(parent)
    start = time.perf_counter()
    result = CandidateResult(tokens, "failed", None, params=space.count_params(tokens),
                             macs=space.count_macs(tokens), device=str(recipe.resolve_device()),
                             threshold=None if stop_rule is None else stop_rule.threshold)
    trainer: Trainer | None = None
    reporter = _Reporter(progress, f"candidate {tokens}" if len(tokens) <= 8 else "candidate",
                         math.ceil(recipe.retain_epoch))
    try:
        trainer = Trainer(space, tokens, data, recipe, parent=parent)  # type: ignore[arg-type]
        with reporter:
            if trainer.inherited:
                _finetune(trainer, result, reporter, stop_rule)
            else:
                for _ in range(recipe.retain_epoch):
                    trainer.run_epoch(reporter)
                result.status, result.reward = "ok", trainer.reward()
    except TrainingFailed as e:
        result.reason = e.reason
    except (RuntimeError, MemoryError) as e:
        if not (isinstance(e, MemoryError) or _is_oom(e)):
            raise
        result.reason = f"out of memory on {result.device}: {str(e).splitlines()[0] if str(e) else 'MemoryError'}"
    finally:
        if trainer is not None:
            result.metrics = list(trainer.metrics)
            result.epochs = trainer.steps_done / trainer.steps_per_epoch
        # Drop the network and optimizer before the next candidate, so a failed one leaves no memory behind.
        trainer = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result.seconds = time.perf_counter() - start
    if result.reason and progress != "none":
        print(f"candidate failed: {result.reason}", file=sys.stderr, flush=True)
    return result
