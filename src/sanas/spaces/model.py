"""ModelSpace: width search over any trained CNN a user brings.

Hand sanas a trained ``nn.Module`` and an example input; it finds the channel groups that must shrink together
(:mod:`sanas.spaces.channels`: residual adds, concatenations, depthwise convs, a flatten before a linear layer)
and searches one width per group — or per stage, where groups repeat — as ratios of the model's own widths::

    space = get_space("ModelSpace", model=trained_net, example_input=torch.zeros(1, 3, 32, 32))
    sa = SANAS(space, max_params=int(0.7 * space.count_params(space.init_tokens())), save_checkpoint=None)
    child = space.inherit(trained_net, sa.next_tokens())    # the trained weights, most important channels kept

From the CLI and TOML the model comes from a Python entry point, ``module:function`` (or ``path/file.py:function``),
a function taking no arguments that returns the trained model::

    [space]
    name = "ModelSpace"
    model = "mymodels:trained_resnet20"
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import marshal
import math
import numbers
import os
import random
import site
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from sanas.spaces.base import SearchSpace, positive_int, register_space, tag_network
from sanas.spaces.channels import ChannelGraph, export_program, trace_channels
from sanas.spaces.inherit import inherit_state

__all__ = ["GRANULARITIES", "ModelSpace", "entry_point_root", "forward_digest", "import_entry_point",
           "load_entry_point", "user_error", "weights_digest"]

#: Token granularities: one token per channel group, or one per stage of repeating groups.
GRANULARITIES = ("group", "stage")
#: (weights digest, forward digest, example's shape without the batch, dtype, device) -> the model's channel groups
_TRACES: dict[tuple[Any, ...], ChannelGraph] = {}
#: Where installed packages live: a module found there needs no recorded folder.
_SITE_FOLDERS = {str(Path(p).resolve()) for p in (*site.getsitepackages(), site.getusersitepackages())}


def _import_root(module: Any, module_name: str) -> str | None:
    """The ``sys.path`` folder ``module_name`` was imported from (``pkg`` for ``pkg/sub.py`` as ``pkg.sub``)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    root = Path(file).resolve().parent
    depth = module_name.count(".") + (Path(file).name == "__init__.py")
    for _ in range(depth):
        root = root.parent
    return str(root)


def _on_path(folder: str) -> None:
    """Put ``folder`` first on ``sys.path`` (once) and keep it there: every process this one starts (candidates,
    finalists: :mod:`sanas.runs.isolate` hands its ``sys.path`` to them) then imports the model's module too."""
    if folder not in sys.path:
        sys.path.insert(0, folder)
        importlib.invalidate_caches()


def _import_entry_module(module_name: str, root: str | None) -> Any:
    """Import the module of an entry point: a file path is imported by its name from its folder, a module name from
    ``root`` (the folder a search recorded), else the working directory, else ``sys.path``."""
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name).expanduser()
        if not path.is_absolute() and not path.is_file() and root is not None:
            path = Path(root) / path.name  # recorded on another machine or from another folder
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        path = path.resolve()
        name = path.stem
        if not name.isidentifier():
            raise ValueError(f"file name {path.name!r} is not a Python module name; rename it (e.g. my_models.py)")
        loaded = sys.modules.get(name)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != path:
            raise ValueError(f"{path.name} has the name of another module Python already imported "
                             f"({getattr(loaded, '__file__', None) or 'built in'}); rename the file")
        _on_path(str(path.parent))
        return importlib.import_module(name)
    for folder in (root, os.getcwd()):
        if folder is None or not Path(folder).is_dir():
            continue
        folder = str(Path(folder).resolve())
        added = folder not in sys.path
        _on_path(folder)
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is None or not module_name.startswith(e.name):
                raise  # the module was found, and something it imports is missing
            if added:
                sys.path.remove(folder)
    return importlib.import_module(module_name)


def entry_point_root(spec: str, root: str | None = None) -> str | None:
    """The folder the module of entry point ``spec`` is imported from: what a search records (``model_root``) so
    that every process it starts, ``sanas train`` from another folder and workers on other machines import the same
    module. ``None`` when the module is installed (importable from anywhere)."""
    module_name = spec.rpartition(":")[0]
    module = _import_entry_module(module_name, root)
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        return str(Path(module.__file__).resolve().parent)
    found = _import_root(module, module_name)
    return found if found is not None and found not in _SITE_FOLDERS else None


def import_entry_point(spec: str, root: str | None = None, what: str = "entry point") -> Callable[..., Any]:
    """The function named by ``"module:function"`` (or ``"path/to/file.py:function"``), imported as
    :func:`load_entry_point` imports a model's: from ``root``, else the working directory, else ``sys.path``.

    ``what`` names it in errors (``"model entry point"``, ``"--evaluate"``, ...).

    >>> import_entry_point("math:sqrt")(16.0)
    4.0
    """
    if not isinstance(spec, str):
        raise ValueError(f"{what} is {spec!r}, expected a string 'module:function'")
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name.isidentifier():
        raise ValueError(f"{what} {spec!r} is not 'module:function' (e.g. 'mymodels:trained_resnet')")
    try:
        module = _import_entry_module(module_name, root)
    except Exception as e:
        raise ValueError(f"cannot load {module_name!r} for {what} {spec!r}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    function = getattr(module, func_name, None)
    if not callable(function):
        raise ValueError(f"{what} {spec!r}: {module_name} has no function {func_name!r}")
    return function


def user_error(spec: str, e: BaseException, what: str = "entry point") -> str:
    """One line for an error raised by the user's own function ``spec``: its type, message and where it was
    raised (file and line)."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename != __file__]  # the user's, not ours
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{what} {spec!r} raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{where}"


def load_entry_point(spec: str, root: str | None = None) -> nn.Module:
    """Call the entry point ``"module:function"`` (or ``"path/to/file.py:function"``) and return its model.

    A module name is imported from ``root`` (the folder a search recorded, see :func:`entry_point_root`), else
    the working directory (as ``python -m`` would), else ``sys.path``; a file by its name from its folder. That
    folder then stays on ``sys.path``, so the processes a search starts import the module the same way.
    """
    function = import_entry_point(spec, root, "model entry point")
    try:
        model = function()
    except Exception as e:  # the user's own code: quote its error in one line, with where it was raised
        raise ValueError(f"{user_error(spec, e, 'model entry point')}; expected a function without arguments that "
                         f"returns the trained model") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model entry point {spec!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a model's parameter and buffer names, shapes and values."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _code_digest(function: Any) -> bytes:
    code = getattr(function, "__code__", None)
    if code is None:
        return f"{getattr(function, '__qualname__', type(function).__qualname__)}".encode()
    return hashlib.sha256(marshal.dumps(code)).digest()


def forward_digest(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of what decides a model's traced graph besides its weights.

    The exact key would be the exported graph itself, but the export is most of what a trace costs (0.23 of 0.25 s
    for a small ResNet), so a cache keyed on it would save nothing. This digest is cheap instead: the model's
    ``torch.fx`` graph when ``symbolic_trace`` can follow the forward (its code as it runs: flags, globals and
    branches already evaluated), and for every module its name, class, the code of every method its classes
    define (a subclass whose forward adds a residual differs), its plain attributes (stride, padding, a
    ``use_residual`` flag...) and its hooks. What it can miss — a forward fx cannot trace that reads a global or a
    closure — would share a trace; the mixed-width children :class:`ModelSpace` runs at construction then refuse
    a grouping that does not fit the forward.
    """
    h = hashlib.sha256()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            h.update(torch.fx.symbolic_trace(model).code.encode())
    except Exception:  # fx cannot follow every forward; the module structure below still counts
        h.update(b"no fx graph;")
    for name, module in model.named_modules():
        h.update(f"{name}:{type(module).__module__}.{type(module).__qualname__};".encode())
        for cls in type(module).__mro__:
            if cls in (nn.Module, object):
                break
            for attr, value in sorted(vars(cls).items()):
                if callable(value) or isinstance(value, staticmethod | classmethod | property):
                    h.update(attr.encode() + _code_digest(getattr(value, "__func__", getattr(value, "fget", value))))
        for attr, value in sorted(vars(module).items()):
            if not attr.startswith("_") and attr != "training" and \
                    isinstance(value, bool | int | float | str | tuple | list | type(None)):
                h.update(f"{attr}={value!r};".encode())
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for hook in hooks.values():
                h.update(b"hook" + _code_digest(hook))
    return h.hexdigest()[:16]


def _ratios(min_ratio: float, max_ratio: float, ratio_step: float) -> list[float]:
    for what, value in (("min_ratio", min_ratio), ("max_ratio", max_ratio), ("ratio_step", ratio_step)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"{what} is {value!r}, expected a positive number")
    if min_ratio > max_ratio:
        raise ValueError(f"min_ratio {min_ratio} is above max_ratio {max_ratio}")
    count = math.floor((max_ratio - min_ratio) / ratio_step + 1e-9) + 1
    return [round(min_ratio + i * ratio_step, 10) for i in range(count)]


def _example(example_input: object, in_channels: int | None, input_size: Sequence[int]) -> torch.Tensor:
    if isinstance(example_input, torch.Tensor):
        if example_input.dim() < 2:
            raise ValueError(f"example_input has shape {tuple(example_input.shape)}, expected a batch (N, C, ...)")
        return example_input.detach()
    if example_input is None:
        if in_channels is None:
            raise ValueError("give example_input (a tensor or its shape, e.g. [3, 32, 32]) or in_channels")
        shape = [positive_int("in_channels", in_channels), *(positive_int("input_size entry", s) for s in input_size)]
    else:
        if isinstance(example_input, str | bytes) or not isinstance(example_input, Sequence):
            raise ValueError(f"example_input is {example_input!r}, expected a tensor or a shape like [3, 32, 32]")
        shape = [positive_int("example_input dimension", s) for s in example_input]
    return torch.zeros(2, *shape)


@register_space
class ModelSpace(SearchSpace):
    """Channel widths of any trained network: one token per coupled channel group, or per stage.

    Token ``i`` picks the width of its group(s) among ``round(r × trained width)`` for the ratios ``r`` from
    ``min_ratio`` to ``max_ratio`` in steps of ``ratio_step`` (duplicates removed; at least one channel). The
    init tokens are the trained widths. Groups whose channels reach the output (the classes), or go through
    anything the tracer cannot follow, are never searched (:attr:`frozen` says why).

    Args:
        model: the trained network, or an entry point ``"module:function"`` returning it.
        example_input: a tensor the model accepts, or its shape without the batch (``[3, 32, 32]``). Only its
            first sample is traced, as a batch of two (:func:`~sanas.spaces.channels.trace_channels`): the groups
            do not depend on the example's batch, and the forward must accept any batch size.
        input_size, in_channels: the example's spatial size and channels when ``example_input`` is not given.
        num_classes: checked against the model's output when given.
        min_ratio, max_ratio, ratio_step: the width ratios (default 0.25, 0.375, ..., 1.0; a max above 1 also
            lets groups grow, function-preservingly, in :meth:`inherit`).
        granularity: ``"group"`` (one token per group) or ``"stage"``: groups with the same trained width,
            feature-map sizes and kind of producing layers (e.g. the inner convs of one ResNet stage) share a token.
        model_digest: the model's :func:`weights_digest`, checked when given (a saved config names the model
            it was made with).
        model_root: the folder the entry point's module is imported from first (:func:`entry_point_root`, what a
            run config records, so that every process of a search, and a saved child's ``model.json``, find it).

    >>> net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3),
    ...                     nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    >>> space = ModelSpace(net, example_input=[1, 28, 28], ratio_step=0.25)
    >>> space.range_table(), space.init_tokens(), space.widths([0, 1])
    ([4, 4], [3, 3], [4, 16])
    >>> space.count_params([0, 1]) == sum(p.numel() for p in space.token2arch([0, 1]).parameters())
    True
    """

    def __init__(self, model: nn.Module | str | None = None, example_input: torch.Tensor | Sequence[int] | None = None,
                 *, input_size: Sequence[int] = (32, 32), in_channels: int | None = None,
                 num_classes: int | None = None, min_ratio: float = 0.25, max_ratio: float = 1.0,
                 ratio_step: float = 0.125, granularity: str = "group", model_digest: str | None = None,
                 model_root: str | None = None) -> None:
        if model is None:
            raise ValueError("ModelSpace needs model= (the trained network, or a 'module:function' entry point); "
                             "a space made from a model object cannot be rebuilt from its saved config alone")
        self.entry_point = model if isinstance(model, str) else None
        self.model_root = model_root if self.entry_point is not None else None
        self.model = load_entry_point(model, model_root) if isinstance(model, str) else model
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"model is a {type(self.model).__name__}, expected a torch.nn.Module or 'module:function'")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity is {granularity!r}, expected one of {', '.join(GRANULARITIES)}")
        self.granularity = granularity
        self.ratio_settings = (min_ratio, max_ratio, ratio_step)
        self.ratios = _ratios(min_ratio, max_ratio, ratio_step)
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        self.example_input = _example(example_input, in_channels, input_size).to(device)
        self.in_channels = int(self.example_input.shape[1])
        if in_channels is not None and in_channels != self.in_channels:
            raise ValueError(f"in_channels is {in_channels} but the example input has {self.in_channels} channels")
        self.digest = weights_digest(self.model)
        if model_digest is not None and model_digest != self.digest:
            raise ValueError(f"the model from {self.entry_point or 'model='} is not the one this space was made with "
                             f"(weights digest {self.digest}, expected {model_digest}); pass the same trained model")
        self.num_classes = self._output_width()
        if num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"num_classes is {num_classes} but {type(self.model).__name__} outputs "
                             f"{self.num_classes} values per example")
        # Every process of a search rebuilds the space from its config, often several times: trace a model once.
        key = (self.digest, forward_digest(self.model), tuple(self.example_input.shape[1:]),
               str(self.example_input.dtype), str(device))
        cached = _TRACES.get(key)
        self.graph: ChannelGraph = cached or trace_channels(self.model, self.example_input)
        self._graphs: dict[tuple[int, ...], ChannelGraph] = {self.input_size: self.graph}
        self._tokens = self._make_tokens()
        self._init = [choices.index(self.graph.groups[groups[0]].width) for groups, choices in self._tokens]
        self._check_children()
        if cached is None:
            _TRACES[key] = self.graph
            while len(_TRACES) > 8:
                _TRACES.pop(next(iter(_TRACES)))

    # --- construction ---------------------------------------------------------------------------------------
    def _output_width(self) -> int:
        was_training = self.model.training
        try:
            with torch.no_grad():
                out = self.model.eval()(self.example_input)
        except Exception as e:
            raise ValueError(f"{type(self.model).__name__} fails on an example input of shape "
                             f"{tuple(self.example_input.shape)}: {type(e).__name__}: {str(e).splitlines()[0]}; "
                             f"give example_input (or in_channels and input_size) it accepts") from None
        finally:
            self.model.train(was_training)
        out = out[0] if isinstance(out, tuple | list) else out
        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            raise ValueError(f"{type(self.model).__name__} returns {type(out).__name__}, expected logits (N, classes)")
        return int(out.shape[-1])

    def _choices(self, width: int) -> list[int]:
        return sorted({max(1, math.floor(r * width + 0.5)) for r in self.ratios})

    def _make_tokens(self) -> list[tuple[list[int], list[int]]]:
        groups = self.graph.groups
        if not groups:
            reasons = "; ".join(f"{name} ({width} ch) {why}" for name, width, why in self.graph.frozen[:4])
            raise ValueError(f"{type(self.model).__name__} has no channel group sanas can search ({reasons}); a "
                             f"searchable group is the output of a Conv/Linear layer that reaches the next Conv/Linear "
                             f"only through BatchNorm, activations, pooling, add, cat or flatten")
        for k, g in enumerate(groups):
            if g.width not in self._choices(g.width):
                raise ValueError(f"group {k} ({g.name}, {g.width} channels): no ratio in {self.ratios} gives its "
                                 f"trained width {g.width}; choose min_ratio, max_ratio and ratio_step so that 1.0 "
                                 f"is one of the ratios")
        tokens: list[tuple[list[int], list[int]]] = []
        index: dict[Any, int] = {}
        for k, g in enumerate(groups):
            choices = self._choices(g.width)
            if len(choices) < 2:
                continue  # one width only: nothing to search
            key = (g.width, g.resolutions, len(g.producers) > 1, g.kind) if self.granularity == "stage" else k
            if key in index:
                tokens[index[key]][0].append(k)
            else:
                index[key] = len(tokens)
                tokens.append(([k], choices))
        if not tokens:
            raise ValueError(f"{type(self.model).__name__}: no channel group has two widths among the ratios "
                             f"{self.ratios}; lower min_ratio")
        return tokens

    def _check_children(self) -> None:
        """Children must run. The narrowest would not with a forward that hard-codes a width (``x.view(-1, 256)``);
        two with mixed widths (each token's narrowest and widest in turn, and a seeded random one) would not with
        channels coupled by something the groups miss (two groups that a residual add ties, taking two widths)."""
        narrowest = [choices[0] for _, choices in self._tokens]
        if not self._runs(self.widths_of(narrowest)):
            self._explain_narrowest()
        rng = random.Random(0)
        alternating = [choices[0] if i % 2 == 0 else choices[-1] for i, (_, choices) in enumerate(self._tokens)]
        mixed = [rng.choice(choices) for _, choices in self._tokens]
        for widths in (alternating, mixed):
            error = self._runs(self.widths_of(widths), report=True)
            if error:
                raise ValueError(f"{type(self.model).__name__} breaks when its groups take different widths "
                                 f"({self._shown(widths)}): {error}; its forward ties channels of groups sanas found "
                                 f"apart")
        self._check_function(mixed, rng)

    def _shown(self, widths: Sequence[int]) -> str:
        shown = ", ".join(f"{self.graph.groups[groups[0]].name} at {w}"
                          for (groups, _), w in zip(self._tokens[:4], widths, strict=False))
        return shown + (", ..." if len(self._tokens) > 4 else "")

    def _check_function(self, token_widths: list[int], rng: random.Random) -> None:
        """A child must compute the model on the channels it keeps: with the other channels of every group made to
        compute zero (:meth:`ChannelGraph.mask`, a random choice of them), the model and the child inherited from
        it give the same outputs (in float64). A grouping that runs but maps channels wrongly — what shapes alone
        cannot rule out, e.g. a channel shuffle written ``view(b, c // g, g, h, w)`` — is refused here instead of
        making wrong children."""
        widths = self.widths_of(token_widths)
        dropped = {k: rng.sample(range(g.width), g.width - w)
                   for k, (g, w) in enumerate(zip(self.graph.groups, widths, strict=True)) if w < g.width}
        try:
            masked = self.graph.mask(self.model, dropped).double().eval()
            child = self.graph.shrink(masked, widths)
            child.load_state_dict(inherit_state(masked, child, self.graph.layout, dict(enumerate(self.graph.widths)),
                                                dict(enumerate(widths)), "group_l2"))
            x = torch.randn(self.example_input.shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64).to(self.example_input.device)
            with torch.no_grad():
                want, got = masked(x), child.eval()(x)
        except Exception:  # a model that cannot run in float64: the runs above are all that can be checked
            return
        want = want[0] if isinstance(want, tuple | list) else want
        got = got[0] if isinstance(got, tuple | list) else got
        gap = float((want - got).abs().max())
        if not gap <= 1e-6 * max(1.0, float(want.abs().max())):
            raise ValueError(f"{type(self.model).__name__}: a child does not compute the model on the channels it "
                             f"keeps ({self._shown(token_widths)}: outputs differ by {gap:.3g}); sanas has misread "
                             f"how its channels are coupled, and refuses to search it rather than make wrong children")

    def _explain_narrowest(self) -> NoReturn:
        """Raise naming the first group whose narrowest width alone breaks the model."""
        for groups, choices in self._tokens:
            widths = self.graph.widths
            for k in groups:
                widths[k] = choices[0]
            error = self._runs(widths, report=True)
            if error:
                g = self.graph.groups[groups[0]]
                raise ValueError(f"{type(self.model).__name__} breaks when group {g.name} ({g.width} channels) "
                                 f"shrinks to {choices[0]}: {error}; its forward probably hard-codes this width "
                                 f"(e.g. x.view(-1, 256)): derive shapes from the tensor (x.flatten(1))")
        raise ValueError(f"{type(self.model).__name__} breaks when all its groups shrink together; its forward "
                         f"probably hard-codes a width (e.g. x.view(-1, 256)): derive shapes from the tensor")

    def _runs(self, widths: list[int], report: bool = False) -> str | bool:
        child = self.graph.shrink(self.model, widths).eval()
        try:
            with torch.no_grad():
                child(self.example_input)
        except Exception as e:
            return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}" if report else False
        return "" if report else True

    # --- tokens ---------------------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.example_input.shape[2:])

    @property
    def frozen(self) -> list[tuple[str, int, str]]:
        """``(group, width, reason)`` of every channel group that keeps its trained width."""
        return list(self.graph.frozen)

    def token_groups(self) -> list[list[str]]:
        """The channel groups each token sets (by the layer that produces them)."""
        return [[self.graph.groups[k].name for k in groups] for groups, _ in self._tokens]

    def token_widths(self) -> list[list[int]]:
        """The width choices of each token (PaddleSlim's per-position ``filter_num``)."""
        return [list(choices) for _, choices in self._tokens]

    def init_tokens(self) -> list[int]:
        return list(self._init)

    def range_table(self) -> list[int]:
        return [len(choices) for _, choices in self._tokens]

    def widths_of(self, token_values: Sequence[int]) -> list[int]:
        """Per-group widths given one width per token."""
        widths = self.graph.widths
        for (groups, _), w in zip(self._tokens, token_values, strict=True):
            for k in groups:
                widths[k] = w
        return widths

    def widths(self, tokens: Sequence[int]) -> list[int]:
        """The width of every token's group(s)."""
        return [choices[t] for (_, choices), t in zip(self._tokens, self.validate(tokens), strict=True)]

    def group_widths(self, tokens: Sequence[int]) -> list[int]:
        """The width of every channel group (searched or not tied to a token) for ``tokens``."""
        return self.widths_of(self.widths(tokens))

    # --- counts ---------------------------------------------------------------------------------------------
    def count_params(self, tokens: Sequence[int]) -> int:
        return self.graph.count_params(self.group_widths(tokens))

    def count_macs(self, tokens: Sequence[int], input_size: Sequence[int] | None = None) -> int:
        """MACs for one example; ``input_size`` other than the example's traces the model again (once per size, at
        the same batch as the first trace)."""
        widths = self.group_widths(tokens)
        size = self.input_size if input_size is None else tuple(int(s) for s in input_size)
        if size not in self._graphs:
            example = torch.zeros(1, *self.example_input.shape[1:2], *size, device=self.example_input.device)
            graph = trace_channels(self.model, example)
            if graph.widths != self.graph.widths:
                raise ValueError(f"{type(self.model).__name__} has other channel groups at input size {size}")
            self._graphs[size] = graph
        return self._graphs[size].count_macs(widths)

    # --- networks -------------------------------------------------------------------------------------------
    def token2arch(self, tokens: Sequence[int]) -> nn.Module:
        """The model at ``tokens``' widths, every layer freshly initialised (the scratch evaluation)."""
        child = self.graph.shrink(self.model, self.group_widths(tokens))
        for m in child.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return tag_network(child, self, self.validate(tokens))

    #: The group L2 magnitude (every weight of a channel across its coupled group). At one ratio for every group it
    #: keeps better channels than filter L1 norms on all three networks of benchmarks/no_cutout.py (+0.04 to +0.17
    #: points at half the parameters, 3 seeds), tying Torch-Pruning's uniform ratio where filter L1 norms trailed it;
    #: the search with it: README, "Measured: the search against Torch-Pruning". Before: "l1" (over |γ|, +0.14 and
    #: +0.37 points on ResNet-20 and MobileNetV2, −0.15 on VGG-11), before that "bn".
    default_importance = "group_l2"

    def inherit(self, parent: nn.Module, tokens: Sequence[int], importance: str | None = None) -> nn.Module:
        """The model at ``tokens``' widths with the trained ``parent``'s weights: each group keeps its most
        important channels (``importance``: ``"bn"``, ``"l1"`` or ``"group_l2"``, see :mod:`sanas.spaces.inherit`;
        default :attr:`default_importance`), or replicates them function-preservingly where a ratio above 1 widens it.

        ``parent`` is the space's model or a network built from a ModelSpace of it on any ratio grid (this one, or
        the one a search's parent or the :meth:`uniform_child` was trained in).
        """
        importance = self.resolve_importance(importance)
        theirs = getattr(parent, "sanas_space", None)
        if theirs is not None and theirs is not self and theirs.fingerprint() != self.fingerprint() \
                and not self._same_model(theirs):
            raise ValueError(f"the parent was built by another space ({theirs!r}), not this ModelSpace")
        parent_tokens = getattr(parent, "sanas_tokens", None) if theirs is not None else None
        parent_widths = theirs.group_widths(parent_tokens) if parent_tokens is not None else self.graph.widths
        child_widths = self.group_widths(tokens)
        child = self.graph.shrink(self.model, child_widths)
        state = inherit_state(parent, child, self.graph.layout, dict(enumerate(parent_widths)),
                              dict(enumerate(child_widths)), importance)
        child.load_state_dict(state)
        return tag_network(child, self, self.validate(tokens))

    def trained_parent(self) -> nn.Module:
        """The model itself: the parent of an inherit search over this space that names no other."""
        return self.model

    def export(self, net: nn.Module, path: str | os.PathLike[str]) -> None:
        """Save a child as a ``torch.export`` program: ``torch.export.load(path).module()`` runs it without sanas
        or the model's code (see :func:`~sanas.spaces.channels.export_program`)."""
        export_program(net, self.example_input, path)

    def config(self) -> dict[str, Any]:
        min_ratio, max_ratio, ratio_step = self.ratio_settings
        return {"name": self.name, "model": self.entry_point, "example_input": list(self.example_input.shape[1:]),
                "min_ratio": min_ratio, "max_ratio": max_ratio, "ratio_step": ratio_step,
                "granularity": self.granularity, "model_digest": self.digest, "in_channels": self.in_channels,
                "num_classes": self.num_classes, **({"model_root": self.model_root} if self.model_root else {})}

    def __deepcopy__(self, memo: dict[int, Any]) -> ModelSpace:
        return self  # a space is an immutable description; networks that carry it must not copy the model with it

    # --- the uniform-width child ----------------------------------------------------------------------------
    def uniform_child(self, max_params: int) -> tuple[ModelSpace, list[int]]:
        """The uniform-width child at ``max_params`` parameters: every searched group at ``round(r × trained width)``
        (at least one channel) for one ratio ``r`` in ``[min_ratio, max_ratio]``, the largest whose network has at
        most ``max_params`` parameters, bisected to the channel as Torch-Pruning's uniform pruning ratio is.

        Snapped to this space's grid instead, the child would stop at the grid's last ratio below: 0.625 on the
        default grid for half the parameters, so 0.39× of them (the parameters go as ``r²``). Its widths lie between
        the grid's, so it comes with a space that holds them: this one with ``ratio_step`` halved until it moves no
        group by more than a channel (the same model and traced graph, and every width of this grid; its
        :meth:`config` rebuilds it, so the child saves, loads and inherits like any other), or this one itself
        where its grid is already that fine.

        >>> net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3),
        ...                     nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        >>> space = ModelSpace(net, example_input=[1, 28, 28])
        >>> budget = space.count_params(space.init_tokens()) // 2
        >>> budget, space.widths(space.init_tokens()), space.token_widths()[0]
        (2613, [16, 32], [4, 6, 8, 10, 12, 14, 16])
        >>> child_space, tokens = space.uniform_child(budget)
        >>> child_space.widths(tokens), child_space.count_params(tokens), child_space.config()["ratio_step"]
        ([11, 22], 2606, 0.03125)

        On the grid, the child would have had ratio 0.625: widths ``[10, 20]``, 2,190 parameters.
        """
        fine = self._finer_grid()
        trained = [fine.graph.groups[groups[0]].width for groups, _ in fine._tokens]

        def at(i: int) -> list[int]:  # the tokens of the i-th ratio, each width exactly as _choices rounds it
            r = fine.ratios[i]
            return [choices.index(max(1, math.floor(r * w + 0.5)))
                    for w, (_, choices) in zip(trained, fine._tokens, strict=True)]

        if fine.count_params(at(0)) > max_params:
            raise ValueError(f"max_params is {max_params:,}, below the narrowest uniform child of {self.name} "
                             f"({fine.count_params(at(0)):,} parameters at ratio {fine.ratios[0]})")
        lo, hi = 0, len(fine.ratios) - 1  # the count never falls as the ratio grows: bisect the last that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fine.count_params(at(mid)) <= max_params else (lo, mid - 1)
        return fine, at(lo)

    def _finer_grid(self) -> ModelSpace:
        """This space with ``ratio_step`` halved until one step moves no searched group by more than a channel
        (halving keeps every ratio of this grid, 1.0 included); the traced graph is shared, nothing is traced or
        run again."""
        min_ratio, max_ratio, step = self.ratio_settings
        widest = max(self.graph.groups[k].width for groups, _ in self._tokens for k in groups)
        while step * widest * max(max_ratio, 1) > 1:
            step /= 2
        if step == self.ratio_settings[2]:
            return self
        fine = object.__new__(type(self))
        fine.__dict__.update(self.__dict__)  # model, graph, digests, example: all a space of this model shares
        fine.ratio_settings = (min_ratio, max_ratio, step)
        fine.ratios = _ratios(min_ratio, max_ratio, step)
        fine._tokens = fine._make_tokens()
        fine._init = [choices.index(fine.graph.groups[groups[0]].width) for groups, choices in fine._tokens]
        return fine

    def _same_model(self, other: object) -> bool:
        """Whether ``other`` is a ModelSpace of the same model, example and classes, on any ratio grid or
        granularity: its children's widths are widths of this space's groups too."""
        grid = ("min_ratio", "max_ratio", "ratio_step", "granularity")
        return isinstance(other, ModelSpace) and other.graph.widths == self.graph.widths and \
            {k: v for k, v in other.config().items() if k not in grid} == \
            {k: v for k, v in self.config().items() if k not in grid}
