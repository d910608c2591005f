"""The parent of an inherit search: found (``search.parent``, the run directory, a ModelSpace's own model),
trained into the run directory when there is none, checked against the search's space, and its training data
checked against the images the rewards are computed on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sanas.runs.config import RunConfig
from sanas.runs.console import say

__all__ = ["PARENT_DIR", "cutout_note", "ensure_parent", "load_parent", "parent_provenance"]

#: Where an inherit search without --parent trains its parent (the init tokens), inside the run directory.
PARENT_DIR = "parent"


def _parent_path(config: RunConfig, run_dir: Path | None) -> Path | None:
    if config.search.get("parent"):
        return Path(config.search["parent"])
    if run_dir is not None and (run_dir / PARENT_DIR / "model.json").exists():
        return run_dir / PARENT_DIR
    return None


def load_parent(config: RunConfig, run_dir: Path | None = None) -> Any:
    """The trained parent of an inherit search, checked against the search's space (``None`` for a scratch
    search, or when the parent is still to be trained into the run directory). Without a parent folder, a space
    made from a trained model (ModelSpace) gives that model.

    Raises ``ValueError`` with one line naming the folder when it cannot be read, or naming both sides when it
    belongs to another space, genotype, class count or input channels.
    """
    if config.recipe.get("evaluation", "scratch") != "inherit":
        return None
    path = _parent_path(config, run_dir)
    if path is None:
        return config.build_space().trained_parent()  # a ModelSpace's own trained model; else still to train
    from sanas.training import load_model

    try:
        net = load_model(path)
    except FileNotFoundError as e:
        raise ValueError(f"parent {path}: {e}") from None
    except Exception as e:  # a corrupt file: safetensors, JSON or shapes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"parent {path} cannot be loaded ({type(e).__name__}: {first}); expected a folder "
                         f"written by sanas train") from None
    space = config.build_space()
    try:
        space.inherit(net, space.init_tokens())  # the same checks every candidate will meet, once, up front
    except (ValueError, NotImplementedError) as e:
        raise ValueError(f"parent {path}: {e}") from None
    return net


def ensure_parent(config: RunConfig, run_dir: Path | None, data: Any, progress: str = "auto") -> Any:
    """:func:`load_parent`, training the init tokens into ``<run_dir>/parent`` first when no parent is given.

    The parent is trained from scratch for ``search.parent_epochs`` epochs under the ``[recipe]`` table's
    training settings (resumable: an interrupted parent training continues on the next run)."""
    net = load_parent(config, run_dir)
    if net is not None or config.recipe.get("evaluation", "scratch") != "inherit":
        return net
    if run_dir is None:
        raise ValueError("an inherit search without a parent trains one into its run directory; give a parent "
                         "(search.parent, --parent) or a run directory")
    from sanas.training import Recipe, train_final

    space = config.build_space()
    keep = {k: v for k, v in config.build_recipe().to_dict().items()
            if k not in ("evaluation", "retain_epoch", "bn_batches", "finetune_lr", "importance", "early_stop",
                         "stop_checks", "distill", "distill_temperature")}
    recipe = Recipe(**keep, retain_epoch=int(config.search["parent_epochs"]))
    say(progress, f"training the parent (init tokens {space.init_tokens()}, {recipe.retain_epoch} epochs from "
                   f"scratch) into {run_dir / PARENT_DIR}")
    train_final(space.init_tokens(), space, data, recipe, run_dir / PARENT_DIR, resume=True,
                progress=progress, onnx=False)  # type: ignore[arg-type]
    return load_parent(config, run_dir)


#: What decides which training images a split holds out: equal on both sides, the held-out sets are equal.
_HELD_OUT_KEYS = ("dataset", "seed", "val_fraction")


def _held_out_of(split: dict[str, Any]) -> tuple[Any, ...]:
    given = split.get("val_indices") or {}
    return (*(split.get(k) for k in _HELD_OUT_KEYS), given.get("sha256"))


def parent_provenance(config: RunConfig, run_dir: Path | None, parent: Any, split: dict[str, Any]) -> str | None:
    """A one-line warning when ``parent`` may have been trained on the images the search's rewards are computed
    on (``split``, the search's data split), else ``None``.

    Silent for a parent trained by sanas on a split that holds out the same images (its ``model.json`` records
    the split: dataset, seed, fraction or index file), for a parent whose training data is unknown when the search
    holds out the images given by an index file (``--val-indices``: the user's word that the parent never saw
    them), for a scratch search and for a reward on the test set.
    """
    if parent is None or config.recipe.get("evaluation", "scratch") != "inherit" or split.get("reward_on_test"):
        return None
    path = _parent_path(config, run_dir)
    known = None
    if path is not None:
        try:
            known = json.loads((path / "model.json").read_text()).get("split")
        except (OSError, ValueError, AttributeError):
            known = None
    given = (split.get("val_indices") or {}).get("file")
    fix = (f"check that {given!r} lists only training-set positions it never saw" if given else
           "give --val-indices FILE (the training-set positions it never saw)")
    advice = (f"its children's rewards are then optimistic and ranked on images it memorised; {fix}, or train "
              f"the parent with sanas train on the same [data] settings")
    if not isinstance(known, dict):
        if given:  # the held-out images are the user's own list of what the parent never saw
            return None
        what = "a model given with the space" if path is None else f"{path} records no data split"
        return (f"sanas: warning: the parent's training data is unknown ({what}): if it was trained on the "
                f"held-out images the rewards are computed on ({split.get('val_size')} of the training set), "
                f"{advice}")
    if known.get("reward_on_test") or _held_out_of(known) != _held_out_of(split):
        def show(s: dict[str, Any]) -> str:
            given = s.get("val_indices") or {}
            held = (f"index file {given.get('file')!r}" if given else f"val_fraction {s.get('val_fraction')}"
                    if not s.get("reward_on_test") else "nothing (reward on test)")
            return f"{s.get('dataset')}, seed {s.get('seed')}, held out {held}"

        return (f"sanas: warning: the parent {path} was trained on another split ({show(known)}) than this "
                f"search's ({show(split)}): some held-out images the rewards are computed on may be in its "
                f"training set; {advice}")
    return None


def cutout_note(parent: Any, cutout: int) -> str | None:
    """One line when ``parent`` (a sanas folder's network, whose ``model.json`` records its recipe) was trained with
    another cutout than the ``cutout`` its fine-tunes use, else ``None`` (also for a parent that records none)."""
    trained = getattr(parent, "sanas_info", {}).get("recipe", {}).get("cutout")
    if not isinstance(trained, int) or trained == cutout:
        return None
    return (f"sanas: note: the parent was trained with cutout {trained}, its fine-tunes use {cutout}"
            f"{' (the default for a fine-tune from the parent)' if cutout == 0 else ''}; --cutout {trained} "
            f"fine-tunes it as it was trained")
