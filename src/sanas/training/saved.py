"""A model folder as :func:`~sanas.training.final.train_final` leaves it: the names of its files, and
:func:`load_model`, which rebuilds the trained network from ``model.json`` and ``model.safetensors`` — or, where
its space cannot be rebuilt from the folder alone (a ``ModelSpace`` made from a model object), loads the
``torch.export`` program ``model.pt2``.

It sits below the trainer and the final training (both read a parent's folder), so that imports flow one way:
data → saved → trainer → final.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from sanas.spaces import space_from_config

__all__ = ["MODEL_JSON", "PROGRAM", "WEIGHTS", "load_model", "weights_digest"]

WEIGHTS = "model.safetensors"
MODEL_JSON = "model.json"
PROGRAM = "model.pt2"


def weights_digest(net: torch.nn.Module) -> str:
    """SHA-256 of a network's state dict (names, shapes, values): which parent a fine-tuned model came from."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def _truncated_tensor(path: Path) -> str | None:
    """The first tensor of a safetensors file whose bytes run past the end of the file, if its header is whole.

    Reads only the header (an 8-byte length, then JSON), never the tensors.
    """
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(f.read(length))
        available = path.stat().st_size - 8 - length
        ends = sorted((v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__")
    except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return None
    return next((name for end, name in ends if end > available), None)


def load_model(out_dir: str | Path, model: torch.nn.Module | str | None = None) -> torch.nn.Module:
    """Rebuild the network saved by :func:`train_final` in ``out_dir``, weights loaded, in eval mode.

    The space config and tokens come from ``model.json``; the weights from ``model.safetensors``. A child of a
    ``ModelSpace`` made from a model object (its config names no entry point) is rebuilt as the user's own class
    when ``model`` is the trained model it was compressed from (or an entry point returning it); without it, the
    folder's ``torch.export`` program is loaded instead (``model.pt2``: no model code needed; it runs in eval mode
    and cannot be switched to training). A missing, corrupt or truncated file, or weights that do not fit the
    network (a tensor too many, missing, or of another shape), raise ``ValueError`` (``FileNotFoundError`` for a
    missing file) naming the file and the tensor.
    """
    out = Path(out_dir)
    meta, weights_path = out / MODEL_JSON, out / WEIGHTS
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} is missing: expected a folder written by train_final")
    try:
        info = json.loads(meta.read_text())
        config = dict(info["space"])
        tokens = info["tokens"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta} is corrupt ({e}); expected the JSON written by train_final") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"{meta} does not describe a model (no {e}); expected the JSON written by "
                         f"train_final") from None
    if model is not None:
        config["model"] = model
    elif "model" in config and config["model"] is None:  # a ModelSpace made from a model object
        return _load_program(out, info)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing: expected a folder written by train_final")
    try:
        space = space_from_config(config)
    except ValueError as e:
        if model is not None or not isinstance(config.get("model"), str) or not (out / PROGRAM).is_file():
            raise
        # The model's code cannot be imported here (another machine, another folder): its program needs none.
        print(f"load_model: {e}; loaded the exported program {out / PROGRAM} instead (pass model= for your own "
              f"class)", file=sys.stderr)
        return _load_program(out, info)
    net = space.token2arch(tokens)
    try:
        weights = load_file(weights_path)
    except Exception as e:  # safetensors' own error type is not public API
        cut = _truncated_tensor(weights_path)
        what = f"tensor {cut!r} is cut short: the file is truncated" if cut else str(e).splitlines()[0]
        raise ValueError(f"{weights_path} cannot be read ({what}); expected the weights written by "
                         f"train_final") from None
    expected = net.state_dict()
    extra, missing = sorted(set(weights) - set(expected)), sorted(set(expected) - set(weights))
    more = len(extra) + len(missing) - 1
    also = f" (and {more} more tensor{'s' if more > 1 else ''} that differ)" if more > 0 else ""
    if extra:
        raise ValueError(f"{weights_path} holds tensor {extra[0]!r}, which the network of {meta.name} does not "
                         f"have{also}")
    if missing:
        raise ValueError(f"{weights_path} lacks tensor {missing[0]!r} of the network of {meta.name}{also}")
    for name, tensor in weights.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{weights_path}: tensor {name!r} has shape {list(tensor.shape)}, the network of "
                             f"{meta.name} expects {list(expected[name].shape)}")
    net.load_state_dict(weights)
    net.sanas_info = info  # model.json: metrics, test accuracy, params (what a fine-tuned child is compared with)
    return net.eval()


def _load_program(out: Path, info: dict) -> torch.nn.Module:
    path = out / PROGRAM
    if not path.is_file():
        raise ValueError(f"{out / MODEL_JSON} is a child of a model given as an object, and {path} is missing: pass "
                         f"the trained model, load_model({str(out)!r}, model=trained_model)")
    try:
        net = torch.export.load(path).module()
    except Exception as e:
        raise ValueError(f"{path} cannot be read ({str(e).splitlines()[0]}); expected the program written by "
                         f"train_final") from None
    net.sanas_info = info
    return net
