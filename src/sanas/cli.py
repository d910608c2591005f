"""The ``sanas`` command line. Every command calls the Python API; none re-implements it.

    sanas search   run a search (new, or resume the run directory), then write its report
    sanas worker   join a running search (run directory, --storage URL or --server-addr) until it is done
    sanas status   progress, best so far and ETA of a search
    sanas report   top candidates, best vs init, plots
    sanas train    final training of one token vector (checkpointed every epoch; --resume)
    sanas export   re-export a trained model (ONNX) and print its summary
    sanas info     per-cell widths, parameters and MACs of token vectors
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from sanas.network import GENOTYPES
from sanas.runs.config import DATA_DEFAULTS, SEARCH_DEFAULTS, defaults_of
from sanas.runs.console import USER_ERRORS, check_folder, user_error_text
from sanas.search.budget import MOVES
from sanas.search.chain import PADDLESLIM_INIT_TEMPERATURE, check_init_temperature
from sanas.search.samplers import SAMPLERS
from sanas.search.storage import DEFAULT_CONNECT_TIMEOUT
from sanas.spaces import DEFAULT_SPACE, DartsSpace, SearchSpace, get_space
from sanas.spaces.inherit import IMPORTANCE
from sanas.training.data import DATASETS, STORAGES
from sanas.training.distributed import BACKENDS, check_launch, init_process_group, launch_from_env
from sanas.training.final import CHECKPOINT, DEFAULT_FINAL_FRACTION, final_epochs
from sanas.training.recipe import DEFAULT_CUTOUT, DEFAULT_DISTILL, DEFAULT_EPOCHS, EVALUATIONS, Recipe

__all__ = ["main", "parse_tokens"]

# Help strings quote the defaults from where they are defined, never a copy.
RECIPE_DEFAULTS = Recipe()
DARTS_DEFAULTS = defaults_of(DartsSpace, "layers", "init_channels", "stem_multiplier", "genotype", "in_channels",
                             "num_classes")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def parse_tokens(values: Sequence[str]) -> list[int]:
    """Parse ``["5", "5", "0"]`` or ``["5,5,0"]`` (or ``"[5, 5, 0]"``) into integers.

    >>> parse_tokens(["5,5", "0"])
    [5, 5, 0]
    """
    parts = [p for v in values for p in v.replace("[", " ").replace("]", " ").replace(",", " ").split()]
    tokens = []
    for i, part in enumerate(parts):
        try:
            tokens.append(int(part))
        except ValueError:
            raise CLIError(f"token {i} is {part!r}, expected an integer") from None
    if not tokens:
        raise CLIError("no tokens given; expected integers like --token 5 5 0 5")
    return tokens


def _init_temperature(text: str) -> float | str:
    try:
        return check_init_temperature(text)
    except ValueError:
        return text  # the config's validation refuses it in one line, as every other bad setting


def parse_server_addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise CLIError(f"server address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8377)")
    if not 0 < int(port) < 65536:
        raise CLIError(f"server address {text!r}: port {port} is not in [1, 65535]")
    return host or "127.0.0.1", int(port)


# --- options shared by several commands ----------------------------------------------------------------------
SPACE_KEYS = ("layers", "filter_num", "init_channels", "stem_multiplier", "genotype", "in_channels", "num_classes",
              "auxiliary", "model")
DATA_KEYS = {"dataset": "dataset", "data_root": "root", "val_fraction": "val_fraction", "data_seed": "seed",
             "train_subset": "train_subset", "val_subset": "val_subset", "reward_on_test": "reward_on_test",
             "download": "download", "val_indices": "val_indices", "input_size": "input_size",
             "data_storage": "storage", "data_cache_dir": "cache_dir"}
RECIPE_KEYS = {"retain_epoch": "retain_epoch", "batch_size": "batch_size", "learning_rate": "learning_rate",
               "drop_path_prob": "drop_path_prob", "cutout": "cutout", "train_seed": "seed", "device": "device",
               "compile": "compile", "channels_last": "channels_last", "evaluation": "evaluation",
               "bn_batches": "bn_batches", "finetune_lr": "finetune_lr", "importance": "importance",
               "early_stop": "early_stop", "stop_checks": "stop_checks", "augment": "augment", "distill": "distill",
               "distill_temperature": "distill_temperature", "evaluate": "evaluate", "finetune": "finetune"}
#: Where ``sanas train --uniform`` puts the uniform-width child, inside the run directory.
UNIFORM_DIR = "uniform"
SEARCH_KEYS = ("sampler", "search_steps", "max_params", "max_macs", "move", "fill", "init_temperature", "reduce_rate",
               "seed", "study_name", "parent", "parent_epochs", "finalists", "finalist_epochs", "finalist_start")


def _count(minimum: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise CLIError(f"{what} is {text!r}, expected an integer >= {minimum}")
        return value

    return parse


_positive_int = _count(1, "--nproc")
_non_negative_int = _count(0, "--max-restarts")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 4,8,16") from None


def add_space_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search space")
    group.add_argument("--space", default=None, help=f"registered space name (default: {DEFAULT_SPACE})")
    group.add_argument("--layers", type=int, help=f"number of cells (DartsSpace default: {DARTS_DEFAULTS['layers']})")
    group.add_argument("--filter-num", type=_int_list, help='width choices, e.g. "4,8,12,16,24,32,48,64"')
    group.add_argument("--init-channels", type=int,
                       help=f"DARTS' C: init widths C, 2C, 4C (default: {DARTS_DEFAULTS['init_channels']})")
    group.add_argument("--stem-multiplier", type=int,
                       help=f"stem width = multiplier × init channels (default: {DARTS_DEFAULTS['stem_multiplier']})")
    group.add_argument("--genotype", choices=sorted(GENOTYPES),
                       help=f"cell genotype (default: {DARTS_DEFAULTS['genotype']})")
    group.add_argument("--in-channels", type=int,
                       help=f"image channels (default: the dataset's; {DARTS_DEFAULTS['in_channels']} without one)")
    group.add_argument("--num-classes", type=int,
                       help=f"classes (default: the dataset's; {DARTS_DEFAULTS['num_classes']} without one)")
    group.add_argument("--no-auxiliary", dest="auxiliary", action="store_false", default=None,
                       help="build no auxiliary head")
    group.add_argument("--model", metavar="MODULE:FUNCTION",
                       help="ModelSpace: entry point returning your trained model (e.g. mymodels:trained_resnet)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=list(DATASETS), help=f"default: {DATA_DEFAULTS['dataset']}")
    group.add_argument("--data-root", help="dataset folder (fashion-mnist default: the Debian package's); folder: "
                                           "the images (DIR/train/<class>/..., DIR/test/<class>/... or "
                                           "DIR/<class>/...); npz: the .npz file")
    group.add_argument("--data-storage", choices=STORAGES,
                       help="folder, npz: memory (decoded once, held as tensors), stream (decoded once into a cache "
                            "file, read batch by batch) or auto (stream when the decoded images exceed a quarter of "
                            "the available memory; the default)")
    group.add_argument("--data-cache-dir", metavar="DIR",
                       help="where streamed images are cached (default: $SANAS_CACHE or ~/.cache/sanas/images)")
    group.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                       help="train at H×W: images are shrunk (aspect kept, centre crop) to it, never enlarged "
                            "(default: the data's own size)")
    group.add_argument("--train-subset", type=int, help="class-balanced subset of the training split (CPU proxies)")
    group.add_argument("--val-subset", type=int, help="class-balanced subset of the held-out split")
    group.add_argument("--val-fraction", type=float,
                       help=f"held-out fraction of each class for the reward ({DATA_DEFAULTS['val_fraction']})")
    group.add_argument("--data-seed", type=int, help=f"seed of the held-out split ({DATA_DEFAULTS['seed']})")
    group.add_argument("--val-indices", metavar="FILE",
                       help="hold out these training-set positions (integers, one per line) for the reward instead "
                            "of --val-fraction: images a parent you trained yourself never saw")
    group.add_argument("--download", action="store_true", default=None,
                       help="cifar10: fetch the official archive (checksum-verified) into --data-root")
    group.add_argument("--reward-on-test", action="store_true", default=None,
                       help="PaddleSlim's protocol: reward on the TEST set (biased; prints a warning)")


def _epochs(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of epochs") from None
    return int(value) if value.is_integer() else value


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training recipe (defaults: PaddleSlim's DARTS demo)")
    group.add_argument("--retain-epoch", type=_epochs,
                       help=f"epochs per candidate ({DEFAULT_EPOCHS['scratch']}; reward = mean of the last two); with "
                            f"--evaluation inherit, fine-tuning epochs ({DEFAULT_EPOCHS['inherit']}; fractions "
                            f"allowed, 0 = BatchNorm re-estimation only)")
    group.add_argument("--batch-size", type=int, help=f"{RECIPE_DEFAULTS.batch_size}")
    group.add_argument("--learning-rate", "--lr", type=float, help=f"{RECIPE_DEFAULTS.learning_rate}, cosine to 0")
    group.add_argument("--drop-path-prob", type=float, help=f"{RECIPE_DEFAULTS.drop_path_prob} · epoch / epochs")
    group.add_argument("--cutout", type=int, help=f"cutout size ({DEFAULT_CUTOUT['scratch']} from scratch, "
                       f"{DEFAULT_CUTOUT['inherit']} for a fine-tune from the parent; 0 = off)")
    group.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                       help="train on the images as they are: no crop, flip or cutout")
    group.add_argument("--train-seed", type=int,
                       help=f"seed of initialisation, shuffling and augmentation ({RECIPE_DEFAULTS.seed})")
    group.add_argument("--device", help=f"{RECIPE_DEFAULTS.device} (default), cpu, cuda, cuda:1, ...")
    group.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    group.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    group = parser.add_argument_group("evaluation from a trained parent (--evaluation inherit)")
    group.add_argument("--evaluation", choices=EVALUATIONS,
                       help="scratch: train every candidate from scratch (PaddleSlim); inherit: start each from the "
                            "trained parent's weights, re-estimate BatchNorm, fine-tune --retain-epoch epochs")
    group.add_argument("--bn-batches", type=int, help=f"BatchNorm re-estimation batches ({RECIPE_DEFAULTS.bn_batches})")
    group.add_argument("--finetune-lr", type=float,
                       help="fine-tuning learning rate, cosine to 0 (default: half of --learning-rate)")
    group.add_argument("--importance", choices=IMPORTANCE,
                       help="which channels a narrower cell keeps: bn = largest |BatchNorm γ|, l1 = largest filter "
                            "norms, group_l2 = largest sum of squares of every weight the channel holds across its "
                            "group (default: the space's; bn for the built-in spaces, group_l2 for ModelSpace)")
    group.add_argument("--no-early-stop", dest="early_stop", action="store_false", default=None,
                       help="do not stop candidates that cannot reach the SA acceptance threshold")
    group.add_argument("--stop-checks", type=int,
                       help=f"scores taken while fine-tuning, for early stopping ({RECIPE_DEFAULTS.stop_checks})")
    group.add_argument("--distill", type=float, metavar="ALPHA",
                       help=f"distil from the parent while fine-tuning: loss = (1 - ALPHA)·CE(student, labels) + "
                            f"ALPHA·T²·KL(softmax(parent/T) ‖ softmax(student/T)), the frozen parent seeing the same "
                            f"batch; ALPHA in [0, 1] (inherit: {DEFAULT_DISTILL:g}; 0 = off)")
    group.add_argument("--distill-temperature", type=float, metavar="T",
                       help=f"temperature T of --distill ({RECIPE_DEFAULTS.distill_temperature:g})")
    group = parser.add_argument_group("your own loop (entry points, imported in every process)")
    group.add_argument("--evaluate", metavar="MODULE:FUNCTION",
                       help="evaluate(model) -> float, higher is better: the reward, instead of the held-out top-1")
    group.add_argument("--finetune", metavar="MODULE:FUNCTION",
                       help="finetune(model, epochs): trains candidates, finalists and the final model instead of "
                            "sanas' loop (after BatchNorm re-estimation; no distillation, no per-epoch checkpoint)")


def add_join_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the study lives (default: inside the run directory)")
    group.add_argument("--storage", help="database URL shared by many machines, e.g. postgresql://user:pw@host/db")
    group.add_argument("--server-addr", type=parse_server_addr, metavar="HOST:PORT",
                       help="a sanas server (PaddleSlim's server_addr)")
    group.add_argument("--study-name", help=f"study inside the storage (default: {SEARCH_DEFAULTS['study_name']})")


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The flags given on the command line, as config sections (absent flags are left out)."""
    space = {k: getattr(args, k) for k in SPACE_KEYS if getattr(args, k, None) is not None}
    if getattr(args, "space", None):
        space["name"] = args.space
    elif space.get("model"):
        space["name"] = "ModelSpace"
    data = {v: getattr(args, k) for k, v in DATA_KEYS.items() if getattr(args, k, None) is not None}
    recipe = {v: getattr(args, k) for k, v in RECIPE_KEYS.items() if getattr(args, k, None) is not None}
    search = {k: getattr(args, k) for k in SEARCH_KEYS if getattr(args, k, None) is not None}
    return {"space": space, "data": data, "recipe": recipe, "search": search}


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    config = {n: getattr(args, n) for n in SPACE_KEYS if getattr(args, n, None) is not None}
    return get_space(args.space or ("ModelSpace" if config.get("model") else DEFAULT_SPACE), **config)


# --- commands ------------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace, console: Console) -> int:
    from sanas.report import model_summary, render_summary

    space = space_from_args(args)
    if space.parts(space.init_tokens()) is None:
        raise CLIError(f"sanas info supports spaces that report their parts (DartsSpace-like) only, not "
                       f"{space.name}")
    token_sets = [("init tokens", space.init_tokens())]
    for tokens in args.token or []:
        token_sets.append(("tokens", parse_tokens(tokens)))
    # Every table is made before the first is printed: a bad --token is refused alone, not after a table.
    tables = [render_summary(model_summary(space, tokens, tuple(args.input_size)),  # type: ignore[arg-type]
                             title=f"{space.name} — {title}") for title, tokens in token_sets]
    for table in tables:
        console.print(table)
    return 0


def _search_config(args: argparse.Namespace) -> Any:
    from sanas.runs.config import RunConfig

    return RunConfig.from_sources(args.config, overrides_from_args(args))


def _study_trials(run_dir: Path | None, storage: str | None, server_addr: tuple[str, int] | None,
                  study_name: str | None) -> tuple[list[Any], Any]:
    """The study's trials and the run config, read without joining the search."""
    from sanas.runs.study import load_study

    study, config = load_study(run_dir, storage, server_addr, study_name)
    return study.get_trials(deepcopy=False), config


def _report(run_dir: Path | None, args: argparse.Namespace) -> Any:
    from sanas.report.search import build_report
    from sanas.runs.finalists import read_finalists

    trials, config = _study_trials(run_dir, getattr(args, "storage", None), getattr(args, "server_addr", None),
                                   getattr(args, "study_name", None))
    return build_report(trials, config.build_space(), config, read_finalists(run_dir) if run_dir else None)


def _write_report(run_dir: Path, args: argparse.Namespace, console: Console, out: Path | None = None) -> None:
    from sanas.report.search import failure_line, render_report, write_report

    report = _report(run_dir, args)
    folder = check_folder(out or run_dir / "report", "--out" if out else "report folder")
    top = getattr(args, "top", 10)
    paths = write_report(report, folder, top)
    console.print(render_report(report, top))
    console.print(f"report written to {paths[0].parent}/ ({', '.join(p.name for p in paths)})")
    if report.failed:  # the last line: how many failed and why (the search itself finished)
        console.print(failure_line(report))


def cmd_search(args: argparse.Namespace, console: Console) -> int:
    from sanas.runs.finalists import finalists_stage
    from sanas.runs.launcher import launch_workers
    from sanas.runs.parent import cutout_note, ensure_parent, load_parent, parent_provenance
    from sanas.runs.study import open_search, preflight, resolve_config
    from sanas.runs.worker import Interrupted, run_worker
    from sanas.training import prepare_data

    run_dir = Path(args.run_dir)
    config = _search_config(args)
    if args.workers > 1 and args.server_addr is not None:
        raise CLIError("--workers with --server-addr: start the server with sanas search --server-addr, then "
                       "connect clients with sanas worker --server-addr")
    # Nothing is written before settings, data, storage URL, server address and a given parent are all checked:
    # a typo must not leave a run directory that refuses the corrected command. The config is saved once the
    # study is open.
    load_parent(config)  # a given parent that cannot serve fails here
    config = resolve_config(run_dir, config, save=False)  # refuses a run dir made with another config
    preflight(args.storage, args.server_addr)
    check_folder(run_dir, "run directory")
    data = prepare_data(**config.data_kwargs())  # each worker loads it again; this only checks it, first
    if args.server_addr is None:
        # Create the study (and check any existing one: the same search?) before the header is printed and before
        # several workers race to do it. A server opens its study as it starts serving, in run_worker.
        sa, _ = open_search(config, run_dir, storage=args.storage, study_name=args.study_name)
        sa.close()
    console.print(f"search: run directory {run_dir}, {config.search['search_steps']} evaluations, sampler "
                  f"{config.search['sampler']}, budget {config.budget():,} params" if config.budget() else
                  f"search: run directory {run_dir}, no budget")
    try:
        if args.workers > 1:
            if config.recipe.get("evaluation") == "inherit":
                parent = load_parent(config, run_dir)
                if parent is None:  # train the parent once, here, rather than in every worker
                    device = config.build_recipe(device=args.device).resolve_device()
                    parent = ensure_parent(config, run_dir, data.to(device), args.progress)
                if (warning := parent_provenance(config, run_dir, parent, data.split)) is not None:
                    print(warning, file=sys.stderr, flush=True)
                if (note := cutout_note(parent, config.build_recipe().cutout)) is not None:  # type: ignore[arg-type]
                    print(note, file=sys.stderr, flush=True)

            def poll() -> None:
                from sanas.report.search import status_lines

                console.print("  " + " | ".join(status_lines(_report(run_dir, args))[:2]))

            bad = launch_workers(run_dir, args.workers, storage=args.storage, study_name=args.study_name,
                                 device=args.device, on_poll=poll if args.progress != "none" else None)
            if bad:
                raise CLIError(f"{bad} of {args.workers} workers failed; see {run_dir / 'logs'}")
        else:
            run_worker(config, run_dir, storage=args.storage, server_addr=args.server_addr, is_server=True,
                       study_name=args.study_name, device=args.device, progress=args.progress)
    except (Interrupted, KeyboardInterrupt):
        print(f"sanas search: interrupted; the pending candidate is recorded as failed. Rerun the same command to "
              f"resume {run_dir}.", file=sys.stderr)
        return 130
    try:
        finalists_stage(config, run_dir, storage=args.storage, study_name=args.study_name, device=args.device,
                        progress=args.progress)
    except KeyboardInterrupt:
        print(f"sanas search: interrupted while fine-tuning the finalists; the finished ones are kept. Rerun the same "
              f"command to resume {run_dir}.", file=sys.stderr)
        return 130
    if not args.no_report:
        # Read the study where it lives (the run directory or --storage): with --server-addr this process was the
        # server, and it has stopped serving by now.
        _write_report(run_dir, argparse.Namespace(**{**vars(args), "server_addr": None}), console)
    return 0


def cmd_worker(args: argparse.Namespace, console: Console) -> int:
    from sanas.runs.worker import worker_main

    if not args.run_dir and args.storage is None and args.server_addr is None:
        raise CLIError("give the search's run directory, --storage URL or --server-addr")
    if args.workers < 1:
        raise CLIError(f"--workers is {args.workers}, expected an integer >= 1")
    if args.run_dir:  # its candidates' results (and a local study's lock) are written there
        check_folder(args.run_dir, "run directory")
    if args.workers > 1:
        from sanas.runs.launcher import launch_workers

        if args.threads is not None:
            raise CLIError("--threads with --workers: the cores are split between the workers")
        logs = Path(args.logs) if args.logs else (Path(args.run_dir) / "logs" if args.run_dir else Path("logs"))
        console.print(f"starting {args.workers} workers (ids {args.worker_id}-{args.worker_id + args.workers - 1}), "
                      f"logs in {logs}/")
        try:
            bad = launch_workers(Path(args.run_dir) if args.run_dir else None, args.workers, storage=args.storage,
                                 server_addr=list(args.server_addr) if args.server_addr else None,
                                 study_name=args.study_name, device=args.device, first_worker_id=args.worker_id,
                                 connect_timeout=args.connect_timeout, logs=logs)
        except KeyboardInterrupt:
            print("sanas worker: interrupted; each worker recorded its pending candidate as failed", file=sys.stderr)
            return 130
        if bad:
            raise CLIError(f"{bad} of {args.workers} workers failed; see {logs}")
        return 0
    return worker_main(args.run_dir or None, storage=args.storage, server_addr=args.server_addr,
                       study_name=args.study_name, worker_id=args.worker_id, device=args.device,
                       threads=args.threads, progress=args.progress, connect_timeout=args.connect_timeout)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from sanas.report.search import status_lines

    report = _report(Path(args.run_dir) if args.run_dir else None, args)
    for line in status_lines(report):
        console.print(line)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    if not args.run_dir and not args.storage and not args.server_addr:
        raise CLIError("give a run directory, --storage URL or --server-addr")
    run_dir = Path(args.run_dir) if args.run_dir else None
    out = Path(args.out) if args.out else None
    if run_dir is None and out is None:
        raise CLIError("without a run directory, say where to write the report with --out")
    _write_report(run_dir or out, args, console, out)  # type: ignore[arg-type]
    return 0


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from sanas.runs.config import RunConfig
    from sanas.runs.parent import cutout_note, load_parent
    from sanas.training import prepare_data, train_final

    run_dir = Path(args.run_dir) if args.run_dir else None
    overrides = overrides_from_args(args)
    # --retain-epoch is this training's own, checked below in its words, not as the search's per-candidate epochs.
    epochs = overrides["recipe"].pop("retain_epoch", None)
    if run_dir is not None:
        base = RunConfig.load(run_dir)
        for section, values in overrides.items():
            getattr(base, section).update(values)
        config = RunConfig.from_dict(base.to_dict())
    else:
        config = RunConfig.from_sources(args.config, overrides)
    if epochs is not None:
        if config.recipe.get("evaluation", "scratch") == "scratch" and (not isinstance(epochs, int) or epochs < 2):
            raise CLIError(f"--retain-epoch is {epochs!r}, expected a whole number >= 2: sanas train from scratch "
                           f"uses the training recipe of the search's candidates, which trains two epochs at least "
                           f"(--evaluation inherit fine-tunes any number, fractions too)")
        config.recipe["retain_epoch"] = epochs
    space = config.build_space()
    notes: list[str] = []  # printed once everything is checked: an error comes first and alone
    tokens = parse_tokens(args.token) if args.token else None
    if args.uniform:
        if tokens is not None:
            raise CLIError("--uniform trains the uniform-width child: give it or --token, not both")
        budget = config.budget(space)
        if budget is None:
            raise CLIError("--uniform scales the init widths down to the search's budget, and this one has none "
                           "(--max-params)")
        try:
            space, tokens = space.uniform_child(budget)  # a ModelSpace's on a finer grid: one ratio fills the budget
        except NotImplementedError as e:
            raise CLIError(str(e)) from None
        notes.append(f"training the uniform-width child at the budget ({budget:,} params): tokens {tokens}, "
                     f"{space.count_params(tokens):,} params")
    elif tokens is None:
        if run_dir is None:
            raise CLIError("give --token, or --run-dir of a search to train its best candidate")
        report = _report(run_dir, args)
        if report.chosen is not None:
            tokens = report.chosen["tokens"]
            notes.append(f"training the search's chosen candidate (the best of its finalists): tokens {tokens}")
        elif report.best is None:
            raise CLIError(f"{run_dir} has no finished feasible candidate to train; pass --token")
        else:
            if report.finalists and report.finalists.get("finalists"):
                raise CLIError(f"{run_dir}'s finalists are not all fine-tuned yet: rerun sanas search on it to finish "
                               f"them, or pass --token")
            tokens = report.best.tokens
            notes.append(f"training the search's best candidate: tokens {tokens}")
    tokens = space.validate(tokens)
    folder = UNIFORM_DIR if args.uniform else "final"
    out = check_folder(args.out if args.out else (run_dir / folder if run_dir else folder), "--out")
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0  # torchrun's agent restarted the job
    if (out / CHECKPOINT).exists() and not (args.resume or restarted):
        raise CLIError(f"{out / CHECKPOINT} exists: pass --resume to continue that training, or choose another "
                       f"--out")
    parent = None
    if config.recipe.get("evaluation") == "inherit":
        if args.parent:
            config.search["parent"] = args.parent
        parent = load_parent(config, run_dir)
        if parent is None:
            raise CLIError("fine-tuning from the parent needs --parent DIR (a sanas train folder), or --run-dir of an "
                           "inherit search that has one")
        if args.retain_epoch is None:
            trained = len(getattr(parent, "sanas_info", {}).get("metrics", []))
            if not trained:
                raise CLIError("fine-tuning from the parent (--evaluation inherit): the parent records no training "
                               "epochs, so give the final model's --retain-epoch (fine-tuning epochs, e.g. half "
                               "of the parent's training)")
            config.recipe["retain_epoch"] = final_epochs(trained)
            notes.append(f"fine-tuning {config.recipe['retain_epoch']} epochs: {DEFAULT_FINAL_FRACTION:g} of the "
                         f"parent's {trained} (--retain-epoch to change)")
    recipe = config.build_recipe()
    if parent is not None and (note := cutout_note(parent, recipe.cutout)) is not None:  # type: ignore[arg-type]
        notes.append(note)
    device = recipe.resolve_device()
    launch = launch_from_env(args.backend, cuda=device.type == "cuda")
    if launch is None and args.nproc > 1:  # start torchrun's elastic agent here, one process per rank
        check_launch(args.nproc, recipe.batch_size, args.backend, device.type == "cuda")
        return _torchrun(args)
    resume = args.resume
    if launch is not None:
        check_launch(launch.world_size, recipe.batch_size, launch.backend, device.type == "cuda")
        device = launch.device(device)
        init_process_group(launch)
        # A restart by torchrun's agent (--max-restarts) is the same job: continue its last checkpoint.
        resume = resume or restarted
        if not launch.is_main:
            console = Console(quiet=True)
    else:
        if args.sync_bn:
            raise CLIError("--sync-bn synchronises BatchNorm over several processes: give --nproc N or run under "
                           "torchrun")
        check_launch(1, recipe.batch_size, args.backend, device.type == "cuda")  # --backend nccl on the CPU
    data = prepare_data(**config.data_kwargs(), device=device)
    for note in notes:
        console.print(note)
    try:
        result = train_final(tokens, space, data, recipe, out, resume=resume, progress=args.progress,
                             onnx=not args.no_onnx, parent=parent, launch=launch, sync_bn=args.sync_bn)
    finally:
        if launch is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    console.print(f"test top-1 {100 * result.test_top1:.2f} %, top-5 {100 * result.test_top5:.2f} %, "
                  f"{result.params:,} params; model in {out}")
    if parent is not None:
        info = getattr(parent, "sanas_info", {})
        if "test" in info and "params" in info:
            top1, params = info["test"]["top1"], info["params"]
            console.print(f"vs the parent: test top-1 {100 * (result.test_top1 - top1):+.2f} points "
                          f"({100 * top1:.2f} %), params {100 * (result.params / params - 1):+.1f} % ({params:,})")
    uniform = run_dir / UNIFORM_DIR / "model.json" if run_dir is not None and not args.uniform else None
    if uniform is not None and uniform.is_file() and out.resolve() != uniform.parent.resolve():
        info = json.loads(uniform.read_text())
        top1, params = info["test"]["top1"], info["params"]
        console.print(f"vs the uniform-width child at the same budget: test top-1 "
                      f"{100 * (result.test_top1 - top1):+.2f} points ({100 * top1:.2f} %), params "
                      f"{100 * (result.params / params - 1):+.1f} % ({params:,})")
    return 0


def _torchrun(args: argparse.Namespace) -> int:
    """``sanas train --nproc N``: the same command, without --nproc, as N processes under torchrun's elastic agent
    on this machine (``--standalone``: a local rendezvous), restarted up to ``--max-restarts`` times."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    rest, skip = [], 0
    for a in args.argv:
        if skip:
            skip -= 1
        elif a in ("--nproc", "--max-restarts"):
            skip = 1
        elif not a.startswith(("--nproc=", "--max-restarts=")):
            rest.append(a)
    try:
        run(parse_args(["--standalone", "--nproc-per-node", str(args.nproc), "--max-restarts",
                        str(args.max_restarts), "--module", "sanas.cli", *rest]))
    except ChildFailedError as e:
        failures = e.failures
        codes = sorted({f.exitcode for f in failures.values()})
        print(f"sanas train: error: {len(failures)} of {args.nproc} processes failed (exit status "
              f"{', '.join(map(str, codes))}) after {args.max_restarts} restart(s); their errors are above",
              file=sys.stderr)
        return 2 if codes == [2] else 1
    return 0


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from sanas.report import model_summary, render_summary
    from sanas.spaces import space_from_config
    from sanas.training import load_model
    from sanas.training.final import missing_onnx_packages, write_onnx

    if args.onnx:  # checked before the (slow) load and export
        missing = missing_onnx_packages()
        if missing:
            raise ValueError(f"--onnx: {' and '.join(missing)} not installed; pip install 'sanas[onnx]'")
        if Path(args.onnx).is_dir():
            raise ValueError(f"--onnx {args.onnx!r} is a folder; expected the path of the .onnx file to write")

    src = Path(args.model_dir)
    net = load_model(src)
    info = json.loads((src / "model.json").read_text())
    space = space_from_config(info["space"])
    tokens = info["tokens"]
    if space.parts(tokens) is not None:  # DartsSpace-like: one row per part
        console.print(render_summary(model_summary(space, tokens), title=f"model in {src}"))
    else:
        console.print(f"model in {src}: {space.name}, tokens {tokens}, {space.count_params(tokens):,} params, "
                      f"{space.count_macs(tokens):,} MACs per image")
    if "test" in info:
        console.print(f"test top-1 {100 * info['test']['top1']:.2f} %")
    if args.onnx:
        example = space.config().get("example_input")  # a ModelSpace's [C, H, W]; the built-in spaces' are 32×32
        outcome = write_onnx(net, space.config()["in_channels"], Path(args.onnx),
                             input_size=example[1:] if example else (32, 32))
        console.print(outcome.message)
        if not outcome.written:
            return 1
    return 0


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The [search] table's flags of ``sanas search``."""
    g = p.add_argument_group("search")
    g.add_argument("--sampler", choices=list(SAMPLERS),
                   help=f"{', '.join(SAMPLERS)} (default: {SEARCH_DEFAULTS['sampler']}; evolution = regularized "
                        f"evolution, tpe = Optuna's TPE)")
    g.add_argument("--search-steps", type=int,
                   help=f"finished evaluations over all workers ({SEARCH_DEFAULTS['search_steps']})")
    g.add_argument("--max-params", help=f"budget: count (3770000, 3.77M) or ratio of the init model "
                                        f"(default: {SEARCH_DEFAULTS['max_params']})")
    g.add_argument("--max-macs", help="MAC budget per example, written like --max-params (0.5x of the init "
                                      "model's MACs); with --max-params both hold (default: none)")
    g.add_argument("--move", choices=MOVES,
                   help=f"fill: every candidate repaired into [fill × budget, budget], a move on one token "
                        f"compensated on the others; plain: PaddleSlim's one-token move, candidates anywhere under "
                        f"the budget (default: {SEARCH_DEFAULTS['move']})")
    g.add_argument("--fill", type=float, help=f"the budget band's lower edge, a fraction of the budget in (0, 1] "
                                  f"(default: {SEARCH_DEFAULTS['fill']})")
    g.add_argument("--init-temperature", type=_init_temperature, metavar="auto|T0",
                   help=f"SA temperature: auto (scale-free, from the reward differences seen) or a fixed T0 "
                        f"(PaddleSlim's: {PADDLESLIM_INIT_TEMPERATURE}) "
                        f"(default: {SEARCH_DEFAULTS['init_temperature']})")
    g.add_argument("--reduce-rate", type=float,
                   help=f"SA temperature decay per evaluation (default: {SEARCH_DEFAULTS['reduce_rate']})")
    g.add_argument("--seed", type=int, help=f"seed of proposals and acceptance draws ({SEARCH_DEFAULTS['seed']})")
    g.add_argument("--parent", help="--evaluation inherit: the trained model to compress (a sanas train folder); "
                                    "without it the init tokens are trained first into RUN/parent")
    g.add_argument("--parent-epochs", type=int, help=f"epochs of that parent training when no --parent is given "
                                                     f"({SEARCH_DEFAULTS['parent_epochs']})")
    g.add_argument("--finalists", type=int,
                   help=f"--evaluation inherit: when the search is done, fine-tune its N best candidates "
                        f"--finalist-epochs each and choose the best of them ({SEARCH_DEFAULTS['finalists']}; 0 = "
                        f"the search's best)")
    g.add_argument("--finalist-epochs", type=float,
                   help=f"fine-tuning epochs per finalist ({SEARCH_DEFAULTS['finalist_epochs']:g})")
    g.add_argument("--finalist-start", action=argparse.BooleanOptionalAction, default=None,
                   help=f"make the search's start (its first candidate) a finalist too, whatever its screening "
                        f"reward ({'on' if SEARCH_DEFAULTS['finalist_start'] else 'off'})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sanas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    progress = {"choices": ("auto", "bar", "lines", "none"), "default": "auto", "help": "progress output (%(default)s)"}

    p = sub.add_parser("search", help="run (or resume) a search, then write its report",
                       description="Search per-cell widths with simulated annealing under a parameter budget. "
                                   "Settings come from defaults, then --config TOML, then flags.")
    p.add_argument("--config", help="TOML file with [space], [data], [recipe], [search] tables")
    p.add_argument("--run-dir", default="runs/search", help="run directory (default: %(default)s)")
    add_space_arguments(p)
    add_data_arguments(p)
    add_recipe_arguments(p)
    add_search_arguments(p)
    add_join_arguments(p)
    p.add_argument("--workers", type=int, default=1, help="local worker processes (one per GPU when GPUs exist)")
    p.add_argument("--progress", **progress)
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("worker", help="join a running search until it is done")
    p.add_argument("run_dir", nargs="?", help="the search's run directory (or use --storage / --server-addr)")
    add_join_arguments(p)
    p.add_argument("--worker-id", type=int, default=0, help="this worker's id (with --workers N: the first of N)")
    p.add_argument("--workers", type=int, default=1,
                   help="N worker processes on this machine (one per visible GPU, round robin; CPU cores split)")
    p.add_argument("--logs", help="with --workers: folder of worker-K.log (default: RUN/logs, or ./logs)")
    p.add_argument("--device", help=f"{RECIPE_DEFAULTS.device} (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT,
                   help=f"seconds to wait for the storage or the server to answer ({DEFAULT_CONNECT_TIMEOUT:g}); start "
                        f"workers before their server with a longer one")
    p.add_argument("--progress", **progress)
    p.set_defaults(run=cmd_worker)

    p = sub.add_parser("status", help="progress, best so far and ETA of a search")
    p.add_argument("run_dir", nargs="?")
    add_join_arguments(p)
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("report", help="top candidates, best vs init, plots (written to RUN/report)")
    p.add_argument("run_dir", nargs="?")
    add_join_arguments(p)
    p.add_argument("--top", type=int, default=10, help="rows of the top-k table (%(default)s)")
    p.add_argument("--out", help="report folder (default: RUN/report)")
    p.set_defaults(run=cmd_report)

    p = sub.add_parser("train", help="final training of one token vector, checkpointed every epoch",
                       description="Train --token (or the best candidate of --run-dir) for --retain-epoch epochs, "
                                   "checkpointing every epoch; test accuracy once at the end; export safetensors.")
    p.add_argument("--token", nargs="+", metavar="T", help="the token vector (default: the search's best)")
    p.add_argument("--run-dir", help="take space, data and recipe from this search's config")
    p.add_argument("--storage", help="with --run-dir: the database URL its study lives in, when it was started with "
                                     "--storage")
    p.add_argument("--study-name", help=f"the study in that storage (default: {SEARCH_DEFAULTS['study_name']})")
    p.add_argument("--config", help="TOML file (when there is no run directory)")
    p.add_argument("--out", help="output folder (default: RUN/final or ./final)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in the output folder")
    p.add_argument("--uniform", action="store_true",
                   help="train the uniform-width child instead: every width scaled by one ratio to the search's "
                        "budget (into RUN/uniform; the chosen model's training then compares with it)")
    p.add_argument("--parent", help="with --evaluation inherit: fine-tune from this trained model (a sanas train "
                                    "folder; default: the search's parent)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export (made if the onnx extra is installed)")
    p.add_argument("--progress", **progress)
    dp = p.add_argument_group("data-parallel (or run under torchrun --nproc-per-node N -m sanas.cli train ...)")
    dp.add_argument("--nproc", type=_positive_int, default=1,
                    help="train on N processes on this machine (one per GPU), under torchrun's elastic agent")
    dp.add_argument("--max-restarts", type=_non_negative_int, default=0,
                    help="with --nproc: restart the job this many times after a process dies (it resumes)")
    dp.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: NCCL on CUDA, gloo on CPU")
    dp.add_argument("--sync-bn", action="store_true", help="BatchNorm statistics over the whole global batch")
    add_space_arguments(p)
    add_data_arguments(p)
    add_recipe_arguments(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("export", help="summary of a trained model, and ONNX export")
    p.add_argument("model_dir", help="folder written by sanas train")
    p.add_argument("--onnx", help="write ONNX here (needs the onnx extra: pip install 'sanas[onnx]')")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("info", help="per-cell summary (width, params, MACs) of token vectors",
                       description="Print a per-cell summary of the init tokens and of each --token given.")
    add_space_arguments(p)
    p.add_argument("--token", nargs="+", action="append", metavar="T",
                   help="a token vector, e.g. --token 5 5 0 5 ... (repeat the flag for several)")
    p.add_argument("--input-size", type=int, nargs=2, default=[32, 32], metavar=("H", "W"))
    p.set_defaults(run=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sanas`` command; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        args.argv = argv
    except CLIError as exc:  # raised by an option's parser (e.g. --server-addr): one line, like any user error
        print(f"sanas: error: {exc}", file=sys.stderr)
        return 2
    console = Console()
    try:
        return int(args.run(args, console))
    except (CLIError, *USER_ERRORS) as exc:
        print(f"sanas {args.command}: error: {user_error_text(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
