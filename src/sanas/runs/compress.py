"""Compress your own trained model in one call: :func:`compress`.

The common case of the Python API in one function, as Torch-Pruning's ``pruner.step()`` or NNI's ``compress()``
are: the model (a trained ``nn.Module`` of the user's own class), its data, a parameter budget and the number of
epochs the chosen child is fine-tuned; the user's own ``evaluate`` and ``finetune`` where sanas' should not be
used. Underneath it is the inherit search the CLI runs (:class:`~sanas.spaces.ModelSpace`, candidates inherited
from the model, BatchNorm re-estimated and screened in child processes, the SA-aware early stop, the finalists,
then the final fine-tune, distilled from the model unless ``finetune`` replaces sanas' loop), with the run
directory as its record: rerunning the same call resumes it.

Like every API that starts processes, call it under ``if __name__ == "__main__":``::

    import sanas

    if __name__ == "__main__":
        out = sanas.compress(trained_net, sanas.prepare_data("fashion-mnist"), budget="0.5x", epochs=12)
        out.model          # a trained module of the user's own class, at the chosen widths
        out.run_dir        # runs/compress: the study, candidates, finalists, final/ (model.pt2 loads without code)
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from sanas.processes import refuse_in_bootstrap
from sanas.runs.config import SEARCH_DEFAULTS
from sanas.runs.console import say
from sanas.runs.worker import SearchFailed, check_progress

__all__ = ["DEFAULT_COMPRESS_STEPS", "Compressed", "compress"]

#: Screened candidates of :func:`compress`: the search the benchmarks measured against Torch-Pruning
#: (``benchmarks/compress_models.py``, 30 candidates, then the finalists).
DEFAULT_COMPRESS_STEPS = 30


def _check_importable(thing: Any, what: str) -> None:
    """Candidates train in child processes, which import the model's class and the user's functions by name: a
    class or function defined inside another function cannot get there; say so before anything starts."""
    if thing is None or isinstance(thing, str):
        return
    target = thing if callable(thing) and not isinstance(thing, nn.Module) else type(thing)
    try:
        pickle.dumps(target)
    except Exception:
        name = getattr(target, "__qualname__", repr(target))
        raise ValueError(f"{what}: {name} cannot be imported by name in the processes that train the candidates "
                         f"(defined inside a function, or a lambda?); define it at the top level of a module") from None


def _training_data(data: Any) -> Any:
    """``data`` as a :class:`~sanas.training.TrainingData` (see :func:`compress`)."""
    from sanas.training.data import Dataset, TrainingData, dataset_from_torch, split_data

    if isinstance(data, TrainingData):
        return data
    if isinstance(data, Dataset):
        return split_data(data)
    if isinstance(data, TorchDataset | DataLoader):
        return split_data(dataset_from_torch(data))
    raise ValueError(f"data is a {type(data).__name__}, expected sanas.prepare_data(...)'s TrainingData, a "
                     f"sanas Dataset, or a torch Dataset of (image, label)")


@dataclass
class Compressed:
    """What :func:`compress` returns: the compressed, fine-tuned ``model`` (the user's class), where everything is
    (``run_dir``; the final model in ``run_dir / "final"``), and how it compares with the model it came from."""

    model: nn.Module
    run_dir: Path
    tokens: list[int]
    params: int
    parent_params: int
    test_top1: float
    #: The user's ``evaluate`` of the final model, when one was given.
    evaluate: float | None = None

    @property
    def ratio(self) -> float:
        """The compressed model's parameters as a fraction of the original's."""
        return self.params / self.parent_params


def compress(model: nn.Module, data: Any, budget: int | float | str = "0.5x", epochs: float | None = None, *,
             run_dir: str | os.PathLike[str] = "runs/compress", example_input: Sequence[int] | None = None,
             evaluate: Callable[[nn.Module], float] | str | None = None,
             finetune: Callable[[nn.Module, float], Any] | str | None = None,
             search_steps: int = DEFAULT_COMPRESS_STEPS, seed: int = 0, device: str = "auto",
             progress: str = "auto", **recipe: Any) -> Compressed:
    """Compress ``model`` to ``budget`` parameters and fine-tune the chosen child for ``epochs`` epochs.

    Args:
        model: the trained network (any ``nn.Module`` whose channels sanas can trace, see ``ModelSpace``).
        data: a :class:`~sanas.training.TrainingData` (``prepare_data(...)``: a registered dataset, a folder of
            images, an .npz), a :class:`~sanas.training.data.Dataset`, or a map-style torch ``Dataset`` of
            ``(image, label)`` (:func:`~sanas.training.data.dataset_from_torch`, 20 % of each class held out as the
            test set); a held-out part of its training images gives the rewards, its test set is evaluated once, at
            the end.
        budget: ``"0.5x"`` of the model's parameters, or a count (``120_000``, ``"1.2M"``).
        epochs: the final fine-tune's epochs (e.g. half of the model's own training); required.
        run_dir: the run's record; rerunning the same call there resumes it, a different one is refused.
        example_input: the input's shape without the batch (default: the data's images).
        evaluate, finetune: the user's own functions (see :class:`~sanas.training.Recipe`): ``evaluate(model)``
            scores candidates (higher is better), ``finetune(model, epochs)`` trains candidates, finalists and
            the final model.
        search_steps: how many candidates the search screens.
        recipe: other :class:`~sanas.training.Recipe` settings (``batch_size``, ``finetune_lr``, ...).
    """
    from sanas.runs.finalists import chosen, run_finalists
    from sanas.runs.isolate import IsolatedRunner
    from sanas.search import SANAS
    from sanas.search.early_stop import stop_rule
    from sanas.spaces import get_space
    from sanas.training import Recipe, evaluate_candidate, load_model, train_final

    refuse_in_bootstrap("sanas.compress")
    if epochs is None or isinstance(epochs, bool) or not isinstance(epochs, int | float) or not epochs > 0:
        raise ValueError(f"epochs is {epochs!r}, expected the final fine-tune's epochs (> 0; e.g. half of the "
                         f"model's own training)")
    data = _training_data(data)
    for thing, what in ((model, "model"), (evaluate, "evaluate"), (finetune, "finetune")):
        _check_importable(thing, what)
    shape = list(example_input) if example_input is not None else list(data.dataset.train_images.shape[1:])
    space = get_space("ModelSpace", model=model, example_input=shape, num_classes=data.num_classes)
    final_recipe = Recipe(evaluation="inherit", retain_epoch=epochs, seed=seed, device=device, evaluate=evaluate,
                          finetune=finetune, **recipe)
    search_recipe = replace(final_recipe, retain_epoch=Recipe(evaluation="inherit").retain_epoch)
    run = Path(run_dir)
    sa = SANAS(space, search_steps=search_steps, max_params=budget, seed=seed, save_checkpoint=run)
    data = data.to(search_recipe.resolve_device())
    reasons: list[str] = []
    try:
        with IsolatedRunner() as runner:
            while (tokens := sa.next_tokens()) is not None:
                say(progress, f"trial {sa.trial_number}: tokens {tokens} ({space.count_params(tokens):,} params)")
                outcome = runner.run(evaluate_candidate, tokens, space, data, search_recipe, progress=progress,
                                     parent=model, stop_rule=stop_rule(sa, search_recipe))
                result = outcome.value if outcome.ok else None
                if result is not None and result.ok:
                    sa.reward(result.reward, curve=result.curve or None, stopped=result.stopped)
                    reasons.clear()
                    continue
                reason = result.reason if result is not None else f"crashed: the candidate's process was " \
                                                                  f"{outcome.reason}"
                sa.fail(reason, retry=result is None)
                reasons.append(reason)
                check_progress(reasons, sa.current_info()["finished"], str(run))
        info, trials = sa.current_info(), sa.study.get_trials(deepcopy=False)
    finally:
        sa.close()
    if not info.get("finished"):
        raise SearchFailed(f"the search in {run} ended with no finished evaluation; fix what its candidates failed "
                           f"with and call again to resume")
    record = run_finalists(run, space, data, search_recipe, model, trials, SEARCH_DEFAULTS["finalists"],
                           SEARCH_DEFAULTS["finalist_epochs"], progress, SEARCH_DEFAULTS["finalist_start"])
    pick = chosen(record)
    best = pick["tokens"] if pick is not None else info["best_tokens"]
    final = train_final(best, space, data, final_recipe, run / "final", resume=True, progress=progress,
                        onnx=False, parent=model)
    net = load_model(run / "final", model=model)
    parent_params = space.count_params(space.init_tokens())
    if progress != "none":
        print(f"compressed: {final.params:,} params ({final.params / parent_params:.2f}x of {parent_params:,}), "
              f"test top-1 {100 * final.test_top1:.2f} %; the model is in {run / 'final'}", file=sys.stderr,
              flush=True)
    return Compressed(net, run, list(best), final.params, parent_params, final.test_top1,
                      net.sanas_info.get("evaluate"))
