"""The user's own evaluation and fine-tuning, in place of sanas' built-in ones (``Recipe.evaluate``,
``Recipe.finetune``).

Peers take the user's loop the same way (NNI's ``evaluating_func``/``training_func``, Intel Neural Compressor's
``eval_func``/``train_func``): a function that scores a model, and one that trains it for a number of epochs. sanas
calls them on each candidate, finalist and the final model, in the process that trains it; given as entry points
(``"mymodule:my_evaluate"``, recorded in the run's config), they import there as the model's module does.

* ``evaluate(model) -> float``: the candidate's reward, higher is better. The model comes in eval mode on the
  training device; the function may move it, but should not keep it. A value that is not a finite number, or an
  exception, fails that candidate with the reason, and the search goes on.
* ``finetune(model, epochs) -> None``: trains ``model`` in place (its optimizer, data and schedule are the user's)
  for ``epochs`` epochs (a float when sanas asks for part of one). An exception fails that candidate.

>>> def evaluate(model):
...     return 0.5
>>> functions = UserFunctions.of(evaluate, None)
>>> functions.reward(torch.nn.Linear(1, 1)), functions.finetune is None
(0.5, True)
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sanas.spaces.model import import_entry_point, user_error
from sanas.training.trainer import TrainingFailed

__all__ = ["UserFunctions", "note_user_functions", "user_functions"]


def _name(function: str | Callable[..., Any]) -> str:
    return function if isinstance(function, str) else \
        f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"


@dataclass(frozen=True)
class UserFunctions:
    """The user's ``evaluate`` and ``finetune`` (either may be ``None``: sanas' own then), resolved to functions."""

    evaluate: Callable[[nn.Module], Any] | None = None
    finetune: Callable[[nn.Module, float], Any] | None = None
    evaluate_name: str = ""
    finetune_name: str = ""

    @classmethod
    def of(cls, evaluate: str | Callable[..., Any] | None,
           finetune: str | Callable[..., Any] | None) -> UserFunctions:
        """Resolve entry points (``"module:function"``) to their functions; a wrong one is one ``ValueError``."""
        resolve = {name: (value if value is None or callable(value) else import_entry_point(value, what=f"--{name}"))
                   for name, value in (("evaluate", evaluate), ("finetune", finetune))}
        return cls(resolve["evaluate"], resolve["finetune"], "" if evaluate is None else _name(evaluate),
                   "" if finetune is None else _name(finetune))

    def reward(self, model: nn.Module) -> float:
        """``evaluate(model)`` as a finite float; anything else raises :class:`TrainingFailed` with the reason."""
        assert self.evaluate is not None
        was_training = model.training
        model.eval()
        try:
            value = self.evaluate(model)
        except Exception as e:
            raise TrainingFailed(user_error(self.evaluate_name, e, "evaluate")) from None
        finally:
            model.train(was_training)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise TrainingFailed(f"evaluate {self.evaluate_name!r} returned {value!r} "
                                 f"({type(value).__name__}), expected a finite number (higher is better)")
        return float(value)

    def train(self, model: nn.Module, epochs: float) -> None:
        """``finetune(model, epochs)``, in training mode; an exception raises :class:`TrainingFailed`."""
        assert self.finetune is not None
        model.train()
        try:
            self.finetune(model, epochs)
        except Exception as e:
            raise TrainingFailed(user_error(self.finetune_name, e, "finetune")) from None
        for name, p in model.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingFailed(f"finetune {self.finetune_name!r} left non-finite weights in {name}")


_NOTED: set[str] = set()


def note_user_functions(user: UserFunctions, recipe: Any, early_stop: bool) -> None:
    """Say once per process what the user's functions replace, on stderr."""
    lines = []
    if user.evaluate is not None:
        lines.append(f"rewards come from evaluate {user.evaluate_name!r} (higher is better), not the held-out top-1")
    if user.finetune is not None:
        off = [what for what, on in (("distillation", (recipe.distill or 0) > 0),
                                     ("the early stop's checks during training", early_stop)) if on]
        lines.append(f"finetune {user.finetune_name!r} trains each network in place of sanas' loop (BatchNorm "
                     f"re-estimation still runs before it{'; off: ' + ', '.join(off) if off else ''})")
    for line in lines:
        if line not in _NOTED:
            _NOTED.add(line)
            print(f"sanas: {line}", file=sys.stderr, flush=True)


def user_functions(recipe: Any) -> UserFunctions:
    """The user functions of a :class:`~sanas.training.recipe.Recipe` (its ``evaluate`` and ``finetune``)."""
    return UserFunctions.of(recipe.evaluate, recipe.finetune)
