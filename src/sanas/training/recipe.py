"""How a candidate is trained: :class:`Recipe` (PaddleSlim's DARTS demo by default, or the inherit evaluation's
fine-tune from a trained parent) and the defaults it falls back on, each checked where it is set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sanas.spaces.inherit import IMPORTANCE

__all__ = ["CUTOUT_BEFORE", "DEFAULT_CUTOUT", "DEFAULT_DISTILL", "DEFAULT_EPOCHS", "EVALUATIONS", "Recipe",
           "no_teacher"]

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
#: Cutout when the recipe does not say: DARTS' 16 for training from scratch; none for a fine-tune from a trained
#: parent. A parent trained without cutout, fine-tuned with it, sees images unlike any it learnt from: one epoch at
#: a learning rate of 1e-7 (weights unchanged, only BatchNorm's running statistics moving) took ResNet-20's held-out
#: top-1 from 91.68 % to 87.04 %, and the final fine-tune never fully recovered (``benchmarks/final_curve.py``).
DEFAULT_CUTOUT: dict[str, int] = {"scratch": 16, "inherit": 0}
#: The cutout of every recipe before a fine-tune from the parent had a default of its own: what a saved run or a
#: record that names no cutout ran with.
CUTOUT_BEFORE = 16


def no_teacher(distill: float, why: str) -> str:
    """The one-line error of a distillation with no parent to distil from."""
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
    cost in ``benchmarks/rank_fidelity.py`` and ``benchmarks/score_fidelity.py``. ``importance=None`` (default) is
    the space's ``default_importance``: ``"group_l2"`` for ``ModelSpace`` (chosen from the compressed models' final
    accuracy in ``benchmarks/no_cutout.py`` and ``benchmarks/compress_models.py``), ``"bn"`` for the built-in
    spaces.

    ``device="auto"`` picks CUDA when available. ``bf16=None`` means
    bf16 autocast on CUDA only. ``channels_last`` pays off on CUDA and CPU alike; with ``bf16=True`` on CPU the
    trainer uses contiguous tensors instead (see ``CPU_BF16_CHANNELS_LAST_NOTE``). ``compile`` wraps the
    network in ``torch.compile`` (slow to start; on CPU it did not pay off). The learning rate follows a
    cosine from ``learning_rate`` to 0 stepped after every batch; drop path is
    ``drop_path_prob · epoch / retain_epoch``. ``augment=False`` trains on the normalised images alone (no crop,
    flip or cutout). ``cutout`` (the side of the square erased from each training image, in pixels at 32×32:
    the trainer scales it, and the crop's padding, to the images' shorter side, see ``Augment.for_size``) defaults to
    :data:`DEFAULT_CUTOUT`: 16 from scratch (DARTS), 0 with ``evaluation="inherit"`` — every fine-tune from the
    parent (candidates, finalists, the final model) then trains on images like those the parent learnt from.

    ``distill`` (α in [0, 1]) distils from the trained parent while fine-tuning (inherit only:
    :func:`evaluate_candidate` and :func:`sanas.training.train_final`): the training loss becomes
    ``(1 − α)·CE(student, y) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))`` (Hinton et al.) with
    ``T = distill_temperature`` (default 4), the teacher being a frozen copy of the parent in eval mode that sees
    the same augmented batch; the auxiliary head keeps its plain cross-entropy. Default: :data:`DEFAULT_DISTILL`
    with ``evaluation="inherit"`` (measured in ``benchmarks/final_curve.py``), 0 from scratch (no parent).

    ``evaluate`` and ``finetune`` put the user's own code in place of sanas' (a function, or an entry point
    ``"module:function"`` imported as a model's is; :mod:`sanas.training.user`): ``evaluate(model) -> float``
    (higher is better) scores every candidate instead of the held-out top-1; ``finetune(model, epochs)`` trains
    it in place of the built-in loop wherever sanas would train (candidates, finalists, the final model). BatchNorm
    re-estimation still runs before it; distillation, per-epoch checkpoints and the early stop's intermediate
    checks do not (the user's loop owns the training), and sanas says so once.

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
    cutout: int | None = None
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 256
    evaluation: str = "scratch"
    bn_batches: int = 20
    finetune_lr: float | None = None
    importance: str | None = None
    early_stop: bool = True
    stop_checks: int = 2
    augment: bool = True
    distill: float | None = None
    distill_temperature: float = 4.0
    evaluate: str | Callable[..., Any] | None = None
    finetune: str | Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation is {self.evaluation!r}, expected one of {', '.join(EVALUATIONS)}")
        if self.retain_epoch is None:  # frozen: defaults that depend on the evaluation are set this way
            object.__setattr__(self, "retain_epoch", DEFAULT_EPOCHS[self.evaluation])
        if self.finetune_lr is None and isinstance(self.learning_rate, int | float):
            object.__setattr__(self, "finetune_lr", self.learning_rate / 2)
        if self.distill is None:
            object.__setattr__(self, "distill", DEFAULT_DISTILL if self.evaluation == "inherit" else 0.0)
        if self.cutout is None:
            object.__setattr__(self, "cutout", DEFAULT_CUTOUT[self.evaluation])
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
        if self.importance is not None and self.importance not in IMPORTANCE:
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
        if isinstance(self.cutout, bool) or not isinstance(self.cutout, int) or self.cutout < 0:
            raise ValueError(f"cutout is {self.cutout!r}, expected a non-negative size in pixels (0 = off)")
        if (isinstance(self.distill, bool) or not isinstance(self.distill, int | float)
                or not 0 <= self.distill <= 1):
            raise ValueError(f"distill is {self.distill!r}, expected a weight in [0, 1] (0 = off)")
        if (isinstance(self.distill_temperature, bool) or not isinstance(self.distill_temperature, int | float)
                or not math.isfinite(self.distill_temperature) or self.distill_temperature <= 0):
            raise ValueError(f"distill_temperature is {self.distill_temperature!r}, expected a temperature > 0")
        if self.distill > 0 and self.evaluation != "inherit":
            raise ValueError(no_teacher(self.distill, f"the {self.evaluation} evaluation has no parent"))
        if self.device != "auto":
            torch.device(self.device)  # raises on nonsense like "gpu"
        for name in ("evaluate", "finetune"):
            value = getattr(self, name)
            if value is not None and not callable(value) and not (isinstance(value, str) and ":" in value):
                raise ValueError(f"{name} is {value!r}, expected a function or an entry point 'module:function'")

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
        """The settings as JSON values: a user function given as an object is named ``module:qualname``."""
        out = dataclasses.asdict(self)
        for name in ("evaluate", "finetune"):
            if callable(out[name]):
                out[name] = f"{out[name].__module__}:{out[name].__qualname__}"
        return out
