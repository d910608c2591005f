"""What the search calls: :func:`evaluate_candidate` trains (or fine-tunes) one candidate and returns its reward.

From scratch (PaddleSlim's protocol) the candidate trains for the recipe's epochs and its reward is the mean
held-out top-1 of the last two. Inherited from a trained parent, it is BatchNorm re-estimated, optionally
fine-tuned with checks on the way (:func:`check_points`) where an early-stop rule (:class:`StopCheck`) may end it,
and scored on the held-out split. A candidate that cannot be trained fails with a reason instead of raising.
"""

from __future__ import annotations

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
from torch import nn

from sanas.processes import refuse_in_bootstrap
from sanas.spaces import SearchSpace
from sanas.training.data import TrainingData
from sanas.training.recipe import Recipe
from sanas.training.saved import load_model
from sanas.training.trainer import EpochMetrics, Progress, Trainer, TrainingFailed, _Reporter
from sanas.training.user import UserFunctions, note_user_functions, user_functions

__all__ = ["CandidateResult", "StopCheck", "check_points", "evaluate_candidate"]


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


def _finetune(trainer: Trainer, result: CandidateResult, reporter: _Reporter, stop: StopCheck | None,
              user: UserFunctions = UserFunctions()) -> None:  # noqa: B008 - frozen, holds no state
    """The inherit evaluation: BatchNorm re-estimation, then fine-tuning with checks; fills ``result``."""
    r = trainer.recipe
    trainer.reestimate_bn(r.bn_batches)
    result.bn_batches = r.bn_batches
    images, labels = trainer.data.val()

    def score(trained: EpochMetrics | None) -> float:
        """The reward now: the user's evaluate, else the held-out top-1 (that of the pass just trained, which ends
        with this evaluation, else measured)."""
        if user.evaluate is not None:
            top1 = user.reward(trainer.net)
        else:
            top1 = trainer.evaluate(images, labels)[1] if trained is None else trained.val_top1
        result.curve.append([result.epochs, top1])
        return top1

    if user.finetune is not None:  # one call trains it all: only the check before it can stop the candidate
        if stop is not None and r.retain_epoch > 0 and stop.should_stop(0, score(None)):
            result.status, result.reward, result.stopped = "ok", result.curve[-1][1], True
            return
        if r.retain_epoch > 0:
            user.train(trainer.net, r.retain_epoch)
            result.epochs = float(r.retain_epoch)
        result.status, result.reward = "ok", score(None)
        return

    last: EpochMetrics | None = None
    for i, at in enumerate(check_points(trainer.total_steps, r.stop_checks)):
        if at > trainer.steps_done:
            last = trainer.run_epoch(reporter, steps=at - trainer.steps_done)
        result.epochs = trainer.steps_done / trainer.steps_per_epoch
        top1 = score(last)
        last = None
        if stop is not None and stop.should_stop(i, top1, [c[1] for c in result.curve[:-1]]):
            result.status, result.reward, result.stopped = "ok", top1, True
            return
    while trainer.steps_done < trainer.total_steps:
        last = trainer.run_epoch(reporter)
    result.epochs = trainer.steps_done / trainer.steps_per_epoch
    result.status, result.reward = "ok", score(last)


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
    refuse_in_bootstrap("training a candidate")
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
    user = user_functions(recipe)
    if progress != "none":
        note_user_functions(user, recipe, stop_rule is not None)
    try:
        trainer = Trainer(space, tokens, data, recipe, parent=parent)  # type: ignore[arg-type]
        with reporter:
            if trainer.inherited:
                _finetune(trainer, result, reporter, stop_rule, user)
            else:
                if user.finetune is not None:
                    user.train(trainer.net, recipe.retain_epoch)
                    result.epochs = float(recipe.retain_epoch)
                else:
                    for _ in range(recipe.retain_epoch):
                        trainer.run_epoch(reporter)
                if user.evaluate is not None:
                    reward = user.reward(trainer.net)
                elif user.finetune is not None:  # no epochs of sanas' own to average: the held-out top-1 now
                    reward = trainer.evaluate(*trainer.data.val())[1]
                else:
                    reward = trainer.reward()
                result.status, result.reward = "ok", reward
    except TrainingFailed as e:
        result.reason = e.reason
    except (RuntimeError, MemoryError) as e:
        if not (isinstance(e, MemoryError) or _is_oom(e)):
            raise
        result.reason = f"out of memory on {result.device}: {str(e).splitlines()[0] if str(e) else 'MemoryError'}"
    finally:
        if trainer is not None:
            result.metrics = list(trainer.metrics)
            if user.finetune is None:
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
