"""Final training of the chosen tokens: a checkpoint after every epoch, exact resume, export, reload.

``out_dir`` after a finished run::

    checkpoint.pt       model, optimizer, scheduler, RNG states, epoch, metrics (written atomically each epoch)
    model.safetensors   the trained weights
    model.json          space config, tokens, recipe, data split, per-epoch metrics, test accuracy
    model.pt2           the trained network as a ``torch.export`` program: ``torch.export.load(path).module()``
                        runs it with PyTorch alone (no sanas, no model code), at the data's image size, any batch
    model.onnx          with the ``onnx`` extra (``pip install 'sanas[onnx]'``), unless ``onnx=False``

:func:`~sanas.training.saved.load_model` gets the network back in one call: rebuilt from ``model.json`` and the
weights where its space can be rebuilt (a built-in space, a model given as an entry point, or ``model=`` the
trained model itself), else the program.

A run killed at any moment (even ``kill -9``) loses at most the epoch in progress: ``resume=True`` reloads
the checkpoint and continues with the same RNG states, so the resumed run equals an uninterrupted one. A kill in
the middle of writing a file leaves a temporary behind; the next run in ``out_dir`` deletes it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import logging
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from sanas.atomic import atomic_write_bytes, clean_stale_temporaries
from sanas.processes import refuse_in_bootstrap
from sanas.spaces import SearchSpace
from sanas.spaces.channels import export_program
from sanas.training.data import TrainingData
from sanas.training.distributed import STREAMS, Launch, barrier, rank_seed
from sanas.training.recipe import Recipe
from sanas.training.saved import MODEL_JSON, PROGRAM, WEIGHTS, load_model, weights_digest
from sanas.training.trainer import EpochMetrics, Progress, Trainer, _Reporter
from sanas.training.user import note_user_functions, user_functions

__all__ = ["FinalResult", "OnnxOutcome", "export_onnx", "load_model", "missing_onnx_packages", "train_final",
           "weights_digest", "write_onnx", "write_program"]

CHECKPOINT = "checkpoint.pt"
ONNX = "model.onnx"
# Recipe fields that may change between a run and its resume without changing what is computed.
_RESUMABLE_CHANGES = ("device", "compile", "eval_batch_size")


@dataclass
class FinalResult:
    """What :func:`train_final` produced. Accuracies are fractions in [0, 1]."""

    out_dir: Path
    tokens: list[int]
    metrics: list[EpochMetrics]
    test_loss: float
    test_top1: float
    test_top5: float
    params: int
    resumed_from_epoch: int


def _identity(space: SearchSpace, tokens: list[int], recipe: Recipe, data: TrainingData,
              parent: str | None) -> dict[str, Any]:
    settings = {k: v for k, v in recipe.to_dict().items() if k not in _RESUMABLE_CHANGES}
    out = {"space": space.config(), "tokens": tokens, "recipe": settings, "split": data.split}
    if parent is not None:
        out["parent"] = parent
    return out


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def missing_onnx_packages() -> list[str]:
    """The packages :func:`export_onnx` needs that are not installed (``pip install 'sanas[onnx]'`` adds them)."""
    return [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]


@dataclass(frozen=True)
class OnnxOutcome:
    """What an export (:func:`write_onnx`, :func:`write_program`) did: ``written`` (the file is complete at its
    path) and the line to print."""

    written: bool
    message: str


def write_onnx(net: torch.nn.Module, in_channels: int, path: str | Path,
               input_size: Sequence[int] = (32, 32)) -> OnnxOutcome:
    """Export ``net`` to ONNX at ``path`` (dynamic batch, ``in_channels`` × ``input_size`` images); returns whether
    the file was written and a one-line message of the outcome.

    One self-contained file (weights inside), written atomically by PyTorch's ``torch.export``-based exporter;
    input ``images``, output ``logits``. Optional: without the ``onnx`` extra, or when the exporter fails, nothing
    is written and the message says why; the safetensors weights stay the model of record. The exporter traces
    the whole network: seconds for a small one, over a minute of CPU for the 20-cell DARTS network.
    """
    missing = missing_onnx_packages()
    if missing:
        return OnnxOutcome(False, f"skipped ONNX export: {' and '.join(missing)} not installed "
                                  f"(pip install 'sanas[onnx]')")
    net = net.eval().float().to("cpu", memory_format=torch.contiguous_format)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    try:
        # The exporter logs a warning for each torchvision op it cannot register (sanas does not use torchvision)
        # and warns about its own internals; neither is about the model.
        registration.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # Batch 2, not 1: torch.export specialises a dimension traced at size 1.
            program = torch.onnx.export(net, (torch.zeros(2, in_channels, *input_size),), dynamo=True, verbose=False,
                                        input_names=["images"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
            blob = program.model_proto.SerializeToString()
        atomic_write_bytes(Path(path), blob)
    except Exception as e:  # the export is a convenience: a failure must not lose a finished training
        return OnnxOutcome(False, f"ONNX export failed ({type(e).__name__}: {e}); the safetensors weights are "
                                  f"complete")
    finally:
        registration.setLevel(level)
    return OnnxOutcome(True, f"wrote {path}")


def write_program(net: torch.nn.Module, example: torch.Tensor, path: str | Path) -> OnnxOutcome:
    """Save ``net`` as a ``torch.export`` program at ``path`` (atomically), for inputs shaped like ``example`` at any
    batch size; as with ONNX, a failure writes nothing and says why in the message, the weights stay complete.

    >>> import tempfile
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    >>> path = Path(tempfile.mkdtemp()) / "model.pt2"
    >>> write_program(net, torch.zeros(1, 1, 8, 8), path).written
    True
    >>> torch.export.load(path).module()(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 2])
    """
    net = net.eval().float().to("cpu", memory_format=torch.contiguous_format)
    buffer = io.BytesIO()
    try:
        export_program(net, example.float().to("cpu"), buffer)  # type: ignore[arg-type]  # torch.export.save takes files
    except Exception as e:  # as for ONNX: a failure must not lose a finished training
        return OnnxOutcome(False, f"program export failed ({str(e).splitlines()[0]}); the safetensors weights are "
                                  f"complete")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return OnnxOutcome(True, f"wrote {path}")


def export_onnx(net: torch.nn.Module, in_channels: int, path: str | Path) -> str:
    """:func:`write_onnx`, returning only its one-line message (``"wrote PATH"`` when the file was written)."""
    return write_onnx(net, in_channels, path).message


def train_final(tokens: Sequence[int], space: SearchSpace, data: TrainingData, recipe: Recipe,
                out_dir: str | Path, resume: bool = False, progress: Progress = "auto", onnx: bool = True,
                on_epoch: Callable[[EpochMetrics], None] | None = None,
                parent: torch.nn.Module | str | Path | None = None, launch: Launch | None = None,
                sync_bn: bool = False) -> FinalResult:
    """Train ``tokens`` for ``recipe.retain_epoch`` epochs, checkpointing to ``out_dir`` after every epoch.

    With ``recipe.evaluation == "inherit"`` the model starts from the trained ``parent`` (a network or a
    ``sanas train`` folder): the child is cut or widened from it, its BatchNorm statistics re-estimated, then
    it is fine-tuned for ``retain_epoch`` epochs at ``recipe.finetune_lr`` (cosine to 0) — a short schedule
    instead of training from scratch; with ``recipe.distill > 0`` it is distilled from the parent while it
    fine-tunes (a frozen copy of ``parent`` is the teacher, see :class:`~sanas.training.Recipe`), and a resumed
    run rebuilds that teacher from the same parent. With ``resume=True`` an existing checkpoint is continued (it
    must be for the same space, tokens, recipe, data split and parent); without it an existing checkpoint is an
    error rather than silently overwritten. The test set is evaluated once, at the end. ``on_epoch`` is called
    after each checkpoint.

    Under torchrun, ``launch`` (:func:`sanas.training.distributed.launch_from_env`, the process group joined)
    trains data-parallel: every rank trains its slice of each global batch (``recipe.batch_size``), ``sync_bn``
    synchronises BatchNorm over the ranks, and rank 0 alone writes the folder (each file atomically, as above)
    and prints. A checkpoint holds no trace of the world size: any world size resumes it, one process included.

    >>> from sanas import get_space
    >>> from sanas.training import prepare_data
    >>> import tempfile
    >>> space = get_space("DartsSpace", layers=3, filter_num=[4, 8, 16], init_channels=4, auxiliary=False)
    >>> data = prepare_data("synthetic", train_size=40, test_size=10)
    >>> out = tempfile.mkdtemp()
    >>> r = train_final(space.init_tokens(), space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu"),
    ...                 out, progress="none", onnx=False)
    >>> len(r.metrics), load_model(out).training
    (2, False)
    """
    refuse_in_bootstrap("a final training")
    tokens = space.validate(tokens)
    out = Path(out_dir)
    checkpoint = out / CHECKPOINT
    parent_id = None
    if recipe.evaluation == "inherit":
        if parent is None:
            raise ValueError("fine-tuning from a parent (evaluation='inherit') needs parent=: a trained network or "
                             "a sanas train folder")
        if not isinstance(parent, torch.nn.Module):
            parent = load_model(parent)
        parent_id = weights_digest(parent)
    trainer = Trainer(space, tokens, data, recipe, parent=parent if parent_id else None, launch=launch,
                      sync_bn=sync_bn)
    identity = _identity(space, tokens, recipe, trainer.data, parent_id)
    main = launch is None or launch.is_main
    if not main:
        progress = "none"
    if checkpoint.exists():
        if not resume:
            raise FileExistsError(f"{checkpoint} exists: pass resume=True to continue that run, or choose another "
                                  f"out_dir")
        try:
            # On the CPU: RNG states must be CPU tensors; weights and optimizer state are copied to the device.
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot read checkpoint {checkpoint}: {e}") from e
        saved = json.loads(state["identity"])
        # A recipe setting added since the checkpoint was written meant its default then.
        saved["recipe"] = {**{k: v for k, v in _recipe_defaults().items() if k in identity["recipe"]},
                           **saved.get("recipe", {})}
        if saved != json.loads(json.dumps(identity)):
            diff = sorted(k for k in identity if saved.get(k) != json.loads(json.dumps(identity[k])))
            raise ValueError(f"checkpoint {checkpoint} belongs to a different run (differs in: {', '.join(diff)}); "
                             f"use another out_dir")
        trainer.load_state_dict(state)
    elif trainer.inherited:
        trainer.reestimate_bn(recipe.bn_batches)
    resumed_from = trainer.epoch
    if main:
        out.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(out)  # left by a run killed while writing its checkpoint
    if resumed_from and progress != "none":
        print(f"final: resuming {checkpoint}: {resumed_from} of {math.ceil(recipe.retain_epoch)} epochs done",
              file=sys.stderr, flush=True)
    reporter = _Reporter(progress, "final", math.ceil(recipe.retain_epoch))
    user = user_functions(recipe)
    if user.finetune is not None:  # the user's loop trains it, in one call: no per-epoch checkpoint to resume
        if main and progress != "none":
            note_user_functions(user, recipe, early_stop=False)
        user.train(trainer.net, recipe.retain_epoch)
    with reporter:
        while user.finetune is None and trainer.steps_done < trainer.total_steps:
            m = trainer.run_epoch(reporter)
            if main:
                state = trainer.state_dict()
                state["identity"] = json.dumps(identity)
                buf = io.BytesIO()
                torch.save(state, buf)
                atomic_write_bytes(checkpoint, buf.getvalue())
                if on_epoch is not None:
                    on_epoch(m)
    test_loss, test_top1, test_top5 = trainer.evaluate(*trainer.data.test())
    params = space.count_params(tokens)
    if not main:
        barrier()  # rank 0 writes the folder; the job ends when it has
        return FinalResult(out, tokens, list(trainer.metrics), test_loss, test_top1, test_top5, params, resumed_from)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in trainer.net.state_dict().items()}
    atomic_write_bytes(out / WEIGHTS, save(weights, metadata={"format": "sanas"}))
    record: dict[str, Any] = {**identity, "params": params, "metrics": [m.to_dict() for m in trainer.metrics],
                              "test": {"loss": test_loss, "top1": test_top1, "top5": test_top5}}
    if user.evaluate is not None:
        record["evaluate"] = user.reward(trainer.net)  # the user's own score of the trained model
    if launch is not None:  # how the last run was launched; each rank's seeds of its random streams, epoch 0
        record["distributed"] = {
            "world_size": launch.world_size, "backend": launch.backend, "sync_bn": sync_bn,
            "seed_rule": "sanas.training.distributed.rank_seed(seed, rank, epoch, stream), reseeded every epoch",
            "seeds_epoch0": {stream: [rank_seed(recipe.seed, r, 0, stream) for r in range(launch.world_size)]
                             for stream in STREAMS}}
    _atomic_json(out / MODEL_JSON, record)
    # The trained network as it was saved, rebuilt by this space (which holds the model even when no config can).
    net = space.token2arch(tokens)
    net.load_state_dict(weights)
    example = torch.zeros(2, *trainer.data.test()[0].shape[1:])
    exports = [write_program(net, example, out / PROGRAM)]
    if onnx:
        exports.append(write_onnx(net, trainer.data.in_channels, out / ONNX, input_size=tuple(example.shape[2:])))
    for outcome in exports:
        if progress != "none":
            print(outcome.message, file=sys.stderr)
    if progress != "none":
        print(f"final: test top1 {100 * test_top1:.2f}% top5 {100 * test_top5:.2f}% ({params:,} params), "
              f"saved to {out}", file=sys.stderr)
    barrier()
    return FinalResult(out, tokens, list(trainer.metrics), test_loss, test_top1, test_top5, params, resumed_from)


def _recipe_defaults() -> dict[str, Any]:
    """What a recipe setting missing from an older checkpoint meant then: its default, and no distillation (a
    fine-tune from the parent distils by default since the setting exists)."""
    return {**{f.name: f.default for f in dataclasses.fields(Recipe)}, "distill": 0.0}


#: The final fine-tune from the parent, as a fraction of the parent's own training epochs (``sanas train`` in
#: inherit mode without ``--retain-epoch``). Chosen from measured curves: half rather than the quarter of before,
#: since the DARTS miniature's chosen children ended 0.32 ± 0.18 points higher after it (``benchmarks/inherit_e2e.py``,
#: row L, 3 seeds) and ``benchmarks/final_curve.py`` measured it better on all six ResNet-20 and MobileNetV2 children
#: it fine-tuned both ways (+0.16 to +0.38 held-out points).
DEFAULT_FINAL_FRACTION = 0.5

#: The default before (a quarter of the parent's epochs): the length every table of ``benchmarks/compress_models.py``
#: and its companions, and rows B, U, G and P of ``benchmarks/inherit_e2e.py``, were measured with.
EARLIER_FINAL_FRACTION = 0.25


def final_epochs(parent_epochs: float, fraction: float = DEFAULT_FINAL_FRACTION) -> int:
    """Epochs of the final fine-tune from a parent trained ``parent_epochs`` epochs: ``fraction`` of them, rounded
    up, at least one.

    >>> final_epochs(24), final_epochs(600), final_epochs(3)
    (12, 300, 2)
    """
    if not parent_epochs > 0:
        raise ValueError(f"parent_epochs is {parent_epochs!r}, expected the parent's training epochs (> 0)")
    return max(1, math.ceil(fraction * parent_epochs))
