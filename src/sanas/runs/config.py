"""A search's whole configuration: space, data, training recipe, search settings — from TOML and flags.

The effective configuration is saved in the run directory (``config.json``) when a search starts, and stored
in the study itself, so a worker on another machine needs only the storage URL or server address to join.
Rerunning a command on an existing run directory resumes it only if the configuration is the same.

A TOML file holds the same settings as the flags (flags override it)::

    [space]                      # get_space("DartsSpace", **space) — in_channels/num_classes follow the data
    name = "DartsSpace"
    layers = 5
    filter_num = [4, 8, 12, 16, 24, 32, 48, 64]
    init_channels = 8

    [data]                       # prepare_data(**data)
    dataset = "fashion-mnist"
    train_subset = 2000

    [recipe]                     # Recipe(**recipe)
    retain_epoch = 2
    batch_size = 64

    [search]
    sampler = "sa"
    search_steps = 20
    max_params = "1.0x"          # absolute ("3.77M", 3770000) or relative to the init tokens ("0.9x")
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import math
import numbers
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sanas.atomic import atomic_write_text
from sanas.search.api import SANAS
from sanas.search.budget import check_fill, check_move, parse_budget
from sanas.search.chain import PADDLESLIM_INIT_TEMPERATURE, check_init_temperature, check_reduce_rate
from sanas.search.samplers import DEFAULT_SAMPLER, SAMPLERS
from sanas.spaces import DEFAULT_SPACE, SPACES, SearchSpace, get_space
from sanas.spaces.inherit import DEFAULT_IMPORTANCE
from sanas.spaces.model import entry_point_root

__all__ = ["CONFIG_FILE", "DEFAULT_FINALISTS", "DEFAULT_FINALIST_EPOCHS", "DEFAULT_FINALIST_START",
           "SEARCH_DEFAULTS", "RunConfig",
           "check_finalists", "load_toml", "parse_budget"]

CONFIG_FILE = "config.json"


def defaults_of(function: Any, *names: str) -> dict[str, Any]:
    """The defaults of ``function``'s parameters ``names``: settings take their defaults from what they configure.

    >>> defaults_of(SANAS, "search_steps", "reduce_rate")
    {'search_steps': 300, 'reduce_rate': 0.85}
    """
    params = inspect.signature(function).parameters
    return {name: params[name].default for name in names}


#: How many of the screened candidates are fine-tuned at the end of an inherit search (0: none, the screening's
#: best is the choice).
DEFAULT_FINALISTS = 4
#: Fine-tuning epochs per finalist.
DEFAULT_FINALIST_EPOCHS = 1.0
#: Whether the search's start (its first candidate: the init tokens repaired into the budget band) is always a
#: finalist, beside the best screened ones: at aggressive budgets the screening reward (BatchNorm re-estimation
#: alone) can lead the chain to candidates that fine-tune worse than where it started
#: (``benchmarks/compress_models.py``, ResNet-20 at 0.3×; README).
DEFAULT_FINALIST_START = True


def check_finalists(count: object, epochs: object) -> tuple[int, float]:
    """``(finalists, finalist_epochs)`` checked: a whole number >= 0, and epochs > 0 (fractions allowed).

    >>> check_finalists(4, 0.5)
    (4, 0.5)
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"finalists is {count!r}, expected a whole number >= 0 (0 = no finalists: the screening's "
                         f"best is the choice)")
    if isinstance(epochs, bool) or not isinstance(epochs, int | float) or not 0 < epochs < float("inf"):
        raise ValueError(f"finalist_epochs is {epochs!r}, expected a number of fine-tuning epochs > 0")
    return count, float(epochs)


#: Settings of the [search] table and their defaults: SANAS's own (PaddleSlim's where it has one), and the
#: few that only a run has.
SEARCH_DEFAULTS: dict[str, Any] = {
    "sampler": DEFAULT_SAMPLER,  # SANAS(sampler=None) means this one
    **defaults_of(SANAS, "search_steps"),
    "max_params": "1.0x",  # a run always has a budget: by default, no larger than the init network
    **defaults_of(SANAS, "max_macs", "move", "fill", "init_temperature", "reduce_rate", "seed", "max_try_times",
                  "study_name", "heartbeat_interval", "grace_period"),
    # The inherit evaluation: a trained parent (a `sanas train` folder); without one, the search first trains the
    # init tokens for parent_epochs epochs (from scratch, the [recipe]'s learning rate) into <run dir>/parent.
    "parent": None,
    "parent_epochs": 30,
    # The inherit evaluation: the best `finalists` screened candidates fine-tuned `finalist_epochs` each at the end
    # (sanas.runs.finalists).
    "finalists": DEFAULT_FINALISTS,
    "finalist_epochs": DEFAULT_FINALIST_EPOCHS,
    "finalist_start": DEFAULT_FINALIST_START,
}


def _data_defaults() -> dict[str, Any]:
    from sanas.training.data import DEFAULT_DATASET, prepare_data

    return {"dataset": DEFAULT_DATASET, **defaults_of(prepare_data, "root", "val_fraction", "seed", "train_subset",
                                                      "val_subset", "reward_on_test",
                                                      "val_indices", "input_size")}


#: Settings of the [data] table and their defaults (``prepare_data``'s).
DATA_DEFAULTS: dict[str, Any] = _data_defaults()


def _data_settings() -> tuple[str, ...]:
    from sanas.training.data import load_dataset

    passed = ("name", "device", "root", "download")  # given by name and position, or not a setting
    loader = [n for n, p in inspect.signature(load_dataset).parameters.items() if p.kind is p.KEYWORD_ONLY]
    return (*DATA_DEFAULTS, "download", *(n for n in loader if n not in DATA_DEFAULTS and n not in passed),
            "classes")


#: Every key the [data] table may hold: ``prepare_data``'s settings, and the synthetic dataset's (sizes, channels).
DATA_SETTINGS: tuple[str, ...] = _data_settings()
SECTIONS = ("space", "data", "recipe", "search")
# Settings that may differ between the processes of one search (where they run, not what they compute).
LOCAL_RECIPE_KEYS = ("device", "compile")
#: Settings that say where this machine finds or keeps something, not what the search is: never a config change.
LOCAL_SPACE_KEYS = ("model_root",)
LOCAL_DATA_KEYS = ("storage", "cache_dir")


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a search config file; unknown tables are an error, so a typo cannot be silently ignored."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {p} is not valid TOML: {e}") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"config file {p} has unknown table(s) {', '.join(unknown)}; expected {', '.join(SECTIONS)}")
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ValueError(f"config file {p}: {name} must be a table ([{name}]), got {table!r}")
    return raw


@dataclass
class RunConfig:
    """The effective configuration of one search (see the module docstring for the TOML form)."""

    space: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_SPACE})
    data: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sources(cls, file: str | os.PathLike[str] | None = None,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None) -> RunConfig:
        """Defaults, then the TOML ``file``, then ``overrides`` (``{"search": {"search_steps": 20}, ...}``)."""
        merged: dict[str, dict[str, Any]] = {"space": {"name": DEFAULT_SPACE}, "data": dict(DATA_DEFAULTS),
                                             "recipe": {}, "search": dict(SEARCH_DEFAULTS)}
        for source in ([load_toml(file)] if file is not None else []) + [dict(overrides or {})]:
            for section, values in source.items():
                merged[section].update({k: v for k, v in values.items() if v is not None})
        # The channel criterion is the space's default unless set: saved explicitly, so that a run keeps the
        # criterion it started with even if a later version changes the default.
        space_class = SPACES.get(str(merged["space"].get("name", DEFAULT_SPACE)))
        merged["recipe"].setdefault("importance", getattr(space_class, "default_importance", DEFAULT_IMPORTANCE))
        # Cutout too: it depends on the evaluation (none for a fine-tune from the parent since it was measured).
        from sanas.training.recipe import DEFAULT_CUTOUT

        evaluation = merged["recipe"].get("evaluation", "scratch")
        if evaluation in DEFAULT_CUTOUT:  # else validate() names the bad evaluation
            merged["recipe"].setdefault("cutout", DEFAULT_CUTOUT[evaluation])
        if merged["data"].get("dataset") in ("folder", "npz") and "classes" not in merged["data"]:
            from sanas.training.data import dataset_classes

            with contextlib.suppress(Exception):  # a missing or bad folder is named by validate(), in one line
                merged["data"]["classes"] = list(dataset_classes(merged["data"]["dataset"], merged["data"].get("root")))
        model = merged["space"].get("model")
        if isinstance(model, str) and "model_root" not in merged["space"]:
            # Recorded, so that every process of the search imports the module from where this one found it: its
            # candidates, `sanas train` from another folder, workers on other machines (where that folder may
            # not exist: the working directory and sys.path come next).
            with contextlib.suppress(Exception):  # a bad entry point is named by validate(), in one line
                if (root := entry_point_root(model)) is not None:
                    merged["space"]["model_root"] = root
        config = cls(**merged)
        config.validate()
        return config

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunConfig:
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            raise ValueError(f"run config has unknown sections {sorted(unknown)}")
        config = cls(**{k: dict(raw.get(k, {})) for k in SECTIONS})
        if "init_temperature" in config.search and config.search["init_temperature"] is None:
            config.search["init_temperature"] = PADDLESLIM_INIT_TEMPERATURE  # saved before "auto", when None was 1.0
        if config.search and "move" not in config.search:  # saved before the budget band: PaddleSlim's moves
            config.search.update(move="plain", fill=SEARCH_DEFAULTS["fill"], max_macs=None)
        if config.search and "finalists" not in config.search:  # saved before finalists: the screening's best
            config.search.update(finalists=0, finalist_epochs=SEARCH_DEFAULTS["finalist_epochs"])
        if config.search and "finalist_start" not in config.search:  # saved before it: the best screened alone
            config.search["finalist_start"] = False
        if "importance" not in config.recipe:  # saved before each space had its own criterion: "bn" everywhere
            config.recipe["importance"] = "bn"
        if "cutout" not in config.recipe:  # saved before the inherit evaluation had its own default
            from sanas.training.recipe import CUTOUT_BEFORE

            config.recipe["cutout"] = CUTOUT_BEFORE
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    # --- what the settings build ------------------------------------------------------------------------------
    def dataset_shape(self) -> tuple[int, int]:
        """(in_channels, num_classes) of the configured dataset."""
        from sanas.training.data import dataset_shape

        return dataset_shape(self.data["dataset"], self.data.get("channels"), self.data.get("root"))

    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images training sees: ``[data] input_size``, else the data's own (read from its headers)."""
        from sanas.training.data import dataset_image_size

        return dataset_image_size(self.data["dataset"], self.data.get("root"), self.data.get("input_size"))

    def build_space(self) -> SearchSpace:
        """The search space; ``in_channels``/``num_classes`` follow the dataset unless set explicitly."""
        settings = {k: v for k, v in self.space.items() if k != "name"}
        in_channels, num_classes = self.dataset_shape()
        settings.setdefault("in_channels", in_channels)
        settings.setdefault("num_classes", num_classes)
        name = self.space.get("name", DEFAULT_SPACE)
        if name == "ModelSpace" and "example_input" not in settings:  # traced at the size it trains at
            settings.setdefault("input_size", list(self.image_size()))
        return get_space(name, **settings)

    def build_recipe(self, **local: Any) -> Any:
        from sanas.training import Recipe

        fields = {f.name for f in dataclasses.fields(Recipe)}
        unknown = sorted(set(self.recipe) - fields)
        if unknown:
            raise ValueError(f"unknown recipe setting(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(fields))}")
        return Recipe(**{**self.recipe, **{k: v for k, v in local.items() if v is not None}})

    def data_kwargs(self) -> dict[str, Any]:
        settings = dict(self.data)
        settings.pop("classes", None)  # recorded, checked by validate(): not a loading setting
        return {"name": settings.pop("dataset"), **settings}

    def check_classes(self) -> None:
        """A user's dataset must still have the classes the run recorded (a resumed search, a worker elsewhere)."""
        from sanas.training.data import dataset_classes

        recorded = self.data.get("classes")
        if recorded is None:
            return
        found = list(dataset_classes(self.data["dataset"], self.data.get("root")))
        if found != list(recorded):
            raise ValueError(f"dataset {self.data.get('root') or self.data['dataset']!r} has classes "
                             f"{found[:6]}{' ...' if len(found) > 6 else ''}, but the run was made with "
                             f"{list(recorded)[:6]}{' ...' if len(recorded) > 6 else ''}; expected the same class "
                             f"folders (restore the data, or use another --run-dir)")

    def budget(self, space: SearchSpace | None = None) -> int | None:
        space = space or self.build_space()
        return parse_budget(self.search.get("max_params"), space.count_params(space.init_tokens()))

    def check_keys(self) -> None:
        """Refuse a setting that no section knows (a typo in the TOML), naming it and the known ones, before a
        constructor meets it as a ``TypeError``."""
        unknown = sorted(set(self.search) - set(SEARCH_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown search setting(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(SEARCH_DEFAULTS)}")
        unknown = sorted(set(self.data) - set(DATA_SETTINGS))
        if unknown:
            raise ValueError(f"unknown data setting(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(DATA_SETTINGS)}")
        name = self.space.get("name", DEFAULT_SPACE)
        space_class = SPACES.get(name) if isinstance(name, str) else None
        if space_class is not None:  # else get_space names the registered spaces
            params = inspect.signature(space_class).parameters
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                unknown = sorted(set(self.space) - {"name"} - set(params))
                if unknown:
                    raise ValueError(f"unknown space setting(s) {', '.join(unknown)} for {name}; expected some of "
                                     f"{', '.join(sorted(params))}")

    def check_input_shape(self) -> None:
        """Refuse a space whose input does not match the data's images (``in_channels``, ``example_input``,
        ``input_size``): it would be built, counted (parameters, MACs, the budget) or traced for images that
        training never sees. Checked from the dataset's registry entry, before any space is built."""
        from sanas.training.data import check_input_size

        check_input_size(self.data.get("input_size"))
        channels, _ = self.dataset_shape()
        height, width = self.image_size()
        images = f"dataset {self.data['dataset']!r} has {channels}×{height}×{width} images"
        follow = "or leave it out: it follows the data"
        given = self.space.get("in_channels")
        if given is not None and given != channels:
            raise ValueError(f"in_channels is {given!r}, but {images}; expected {channels} ({follow})")
        example = self.space.get("example_input")
        expected = [channels, height, width]
        if isinstance(example, list | tuple) and list(example) != expected:
            raise ValueError(f"example_input is {list(example)!r}, but {images}; expected {expected} ({follow})")
        size = self.space.get("input_size")
        if isinstance(size, list | tuple) and list(size) != [height, width]:
            raise ValueError(f"input_size is {list(size)!r}, but {images}; expected {[height, width]} ({follow})")

    def validate(self) -> None:
        """Check every section now, so a bad setting fails before any work starts (one clear error)."""
        self.check_keys()
        for section in SECTIONS:  # NaN is never a setting, and would not even equal itself on resume
            for key, value in getattr(self, section).items():
                if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
                    raise ValueError(f"{section}.{key} is {value!r}, expected a finite number")
        self.check_input_shape()
        self.check_classes()
        space = self.build_space()  # an unknown dataset fails here, naming the registered ones
        budget = self.budget(space)
        if budget is not None:
            # The all-smallest tokens: every sanas space orders its choices from narrow to wide.
            smallest = space.count_params([0] * len(space.range_table()))
            if budget < smallest:
                raise ValueError(f"max_params is {self.search.get('max_params')!r} ({budget:,} params), below the "
                                 f"smallest network of the space ({smallest:,} params, every token 0); expected "
                                 f"at least {smallest:,}")
        parse_budget(self.search.get("max_macs"), 1, "max_macs")
        check_move(self.search.get("move"))
        check_fill(self.search.get("fill"))
        check_finalists(self.search.get("finalists"), self.search.get("finalist_epochs"))
        if not isinstance(self.search.get("finalist_start"), bool):
            raise ValueError(f"finalist_start is {self.search.get('finalist_start')!r}, expected true or false")
        # The parent an inherit search trains when it has none is trained from scratch: two epochs at least (the
        # recipe's rule), checked here so that a bad value writes no run directory.
        parent_epochs = self.search.get("parent_epochs", SEARCH_DEFAULTS["parent_epochs"])
        if isinstance(parent_epochs, bool) or not isinstance(parent_epochs, int) or parent_epochs < 2:
            raise ValueError(f"parent_epochs is {parent_epochs!r}, expected an integer >= 2 (the parent is trained "
                             f"from scratch, and its reward averages the last two epochs)")
        self.build_recipe()
        if self.search.get("sampler") not in SAMPLERS:
            raise ValueError(f"sampler is {self.search.get('sampler')!r}, expected one of {', '.join(SAMPLERS)}")
        check_init_temperature(self.search.get("init_temperature"))
        check_reduce_rate(self.search.get("reduce_rate"))
        steps = self.search.get("search_steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"search_steps is {steps!r}, expected a positive integer")

    def identity(self) -> dict[str, Any]:
        """What must match for two processes to be working on the same search."""
        out = self.to_dict()
        out["recipe"] = {k: v for k, v in out["recipe"].items() if k not in LOCAL_RECIPE_KEYS}
        return out

    # --- run directory ----------------------------------------------------------------------------------------
    def save(self, run_dir: str | os.PathLike[str]) -> None:
        atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> RunConfig:
        path = Path(run_dir) / CONFIG_FILE
        if not path.is_file():
            raise ValueError(f"{run_dir} is not a sanas run directory (no {CONFIG_FILE}); start one with sanas search")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is corrupt ({e}); expected the JSON written by sanas search") from None

    def check_matches(self, other: RunConfig, where: str) -> None:
        """Refuse to resume ``where`` (created with ``other``) with a different configuration."""
        mine, theirs = self.identity(), other.identity()
        diff = []
        for section in SECTIONS:
            for key in sorted(set(mine[section]) | set(theirs[section])):
                if key in {"space": LOCAL_SPACE_KEYS, "data": LOCAL_DATA_KEYS}.get(section, ()):
                    continue
                if mine[section].get(key) != theirs[section].get(key):
                    diff.append(f"{section}.{key}: {theirs[section].get(key)!r} there, {mine[section].get(key)!r} now")
        if diff:
            raise ValueError(f"{where} was created with a different config ({'; '.join(diff)}); use another "
                             f"--run-dir, or rerun with the same settings to resume")
