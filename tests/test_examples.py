"""The cluster recipes in ``examples/`` (SLURM, Kubernetes): every ``sanas`` command line in them — code, and
commands quoted in comments — is one the current CLI accepts, and their worker scripts join a real study the way
a scheduler runs them."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from sanas.cli import CLIError, build_parser, overrides_from_args, parse_tokens
from sanas.runs.config import RunConfig
from sanas.runs.study import open_search
from sanas.search.lease import OWNER_KEY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SLURM_SEARCH = EXAMPLES / "slurm" / "search_workers.sbatch"
SLURM_FINAL = EXAMPLES / "slurm" / "final_train.sbatch"
K8S_SEARCH = EXAMPLES / "kubernetes" / "search-workers.yaml"
K8S_FINAL = EXAMPLES / "kubernetes" / "final-train.yaml"

#: The sanas commands each recipe's code must run (at least), so that an extractor finding nothing fails.
EXPECTED = {
    SLURM_SEARCH: {"search": 1, "status": 1, "worker": 1},
    SLURM_FINAL: {"report": 1, "train": 1},
    K8S_SEARCH: {"search": 1, "status": 1, "worker": 1},
    K8S_FINAL: {"train": 1},
    EXAMPLES / "README.md": {},  # its `quoted` commands only
}

#: Plausible values of the shell variables the recipes use (a Kubernetes container's own `value:` env entries are
#: taken from the YAML). A recipe using a variable missing here fails the test until it is added.
VALUES = {
    "SANAS_STORAGE": "postgresql://sanas@db.example.org:5432/sanas",
    "CONFIG": "configs/darts_cifar10.toml",
    "RUN_DIR": "runs/c10",
    "SLURM_ARRAY_TASK_ID": "3",
    "SLURM_CPUS_PER_TASK": "8",
    "SLURM_NNODES": "2",
    "SLURM_JOB_ID": "4242",
    "GPUS_PER_NODE": "4",
    "head_node": "gpu-node-001",
    "TOKENS": "5, 5, 0, 5, 5, 5, 0, 5, 5, 5, 5, 5, 5, 5, 5, 0, 5, 5, 5, 5",
    "JOB_COMPLETION_INDEX": "5",
}

TINY = {
    "space": {"layers": 3, "filter_num": [4, 8, 16], "init_channels": 4},
    "data": {"dataset": "synthetic", "train_size": 80, "test_size": 20},
    "recipe": {"retain_epoch": 2, "batch_size": 16, "cutout": 0, "device": "cpu"},
    "search": {"search_steps": 3},
}
STORAGE_ERROR = ("error: storage '' is not a database URL; expected e.g. 'postgresql://user:pass@host:5432/db' or "
                 "'sqlite:////abs/path/sanas.db' (for a local store, pass the run directory instead)")


# --- finding the command lines --------------------------------------------------------------------------------
@dataclass
class Invocation:
    """One ``sanas`` command line found in a recipe: its words after the program (unsubstituted), and torchrun's
    own words when it is started as ``torchrun ... -m sanas.cli``."""

    path: Path
    where: str  # "code" or "comment"
    words: list[str]
    launcher: list[str]
    line: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)} ({self.where}): {self.line.strip()}"


_VAR = re.compile(r"\$\{(\w+)(?::?([-=?+])([^}]*))?\}|\$(\w+)")
_OPERATOR = re.compile(r"^[();<>|&]+$")
_SANAS = re.compile(r"([\w.~-]*/)*sanas")  # sanas, .venv/bin/sanas; not postgresql://host/sanas
_TORCHRUN = re.compile(r"([\w.~-]*/)*torchrun")
_PROGRAM_STARTS = ("sanas ", "python -m sanas.cli", "python3 -m sanas.cli", "torchrun ", "srun ")


def substitute(word: str, values: dict[str, str]) -> str:
    """``word`` (one shell word, quotes already removed) with ``$X``, ``${X}`` and ``${X:-default}`` replaced."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        if name in values:
            return values[name]
        if m.group(2) in ("-", "="):
            return m.group(3)
        raise KeyError(f"${name} has no plausible value in tests/test_examples.py's VALUES")

    return _VAR.sub(one, word)


def _words(line: str) -> list[str]:
    line = re.sub(r"(?<=\s)\d+(?=[<>])", " ", line)  # a file descriptor glued to its redirection: 2>&1
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def invocations_in(line: str, path: Path, where: str) -> list[Invocation]:
    """Every ``sanas ...``, ``python -m sanas.cli ...`` and ``torchrun ... -m sanas.cli ...`` in one logical line;
    a command ends at a shell operator (``;``, ``&&``, ``|``, a redirection ...)."""
    words = _words(line)
    found, i = [], 0
    while i < len(words):
        w = words[i]
        end = next((j for j in range(i + 1, len(words)) if _OPERATOR.match(words[j])), len(words))
        if _SANAS.fullmatch(w):
            found.append(Invocation(path, where, words[i + 1:end], [], line))
        elif re.fullmatch(r"(.*/)?python3?", w) and words[i + 1:i + 3] == ["-m", "sanas.cli"]:
            found.append(Invocation(path, where, words[i + 3:end], [], line))
        elif _TORCHRUN.fullmatch(w):
            found.append(Invocation(path, where, [], words[i + 1:end], line))
        else:
            i += 1
            continue
        i = end
    return found


def shell_invocations(text: str, path: Path) -> list[Invocation]:
    """The command lines of a shell script: its code (``\\`` continuations joined) and the commands quoted in
    its comments — lines that start with one, and `backquoted` spans."""
    code, prose = [], []
    for line in text.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if stripped.startswith(("#!", "#SBATCH")):
                continue
            prose.append(body)
            if body.startswith(_PROGRAM_STARTS):
                code.append((body, "comment"))
        elif stripped:
            code.append((line, "code"))
    spans = [(s, "comment") for s in re.findall(r"`([^`]*)`", " ".join(prose))
             if ("sanas" in s or "torchrun" in s) and s not in ("sanas", "torchrun")]  # not a program's bare name
    return [inv for line, where in code + spans for inv in invocations_in(line, path, where)]


def k8s_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        out += spec.get("initContainers", []) + spec.get("containers", [])
    return out


def container_script(container: dict[str, Any]) -> str:
    command, args = container.get("command", []), container.get("args", [])
    assert command[-1:] == ["-c"] and len(args) == 1, f"{container['name']}: expected command [bash, -c], one script"
    return args[0]


def recipe_invocations(path: Path) -> list[Invocation]:
    """Every sanas command line of a recipe file (for YAML: its containers' scripts, then its comments)."""
    text = path.read_text()
    if path.suffix == ".md":
        spans = re.findall(r"`([^`]+)`", text)
        return [inv for s in spans if s not in ("sanas", "torchrun") for inv in invocations_in(s, path, "comment")]
    if path.suffix != ".yaml":
        return shell_invocations(text, path)
    found = []
    for container in k8s_containers(list(yaml.safe_load_all(text))):
        found += shell_invocations(container_script(container), path)
    comments = "\n".join(line for line in text.splitlines() if line.strip().startswith("#"))
    seen = {inv.line for inv in found}
    return found + [inv for inv in shell_invocations(comments, path) if inv.line not in seen]


def container_env(path: Path) -> dict[str, str]:
    """The plain ``value:`` environment entries of a Kubernetes recipe's containers."""
    env: dict[str, str] = {}
    if path.suffix == ".yaml":
        for container in k8s_containers(list(yaml.safe_load_all(path.read_text()))):
            env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def container_values(path: Path) -> dict[str, str]:
    """VALUES, and for the other names the Kubernetes containers' own environment."""
    return {**container_env(path), **VALUES}


def config_maps(path: Path) -> dict[str, str]:
    """The files a Kubernetes recipe mounts from its own ConfigMaps: mount path -> content."""
    if path.suffix != ".yaml":
        return {}
    docs = list(yaml.safe_load_all(path.read_text()))
    data = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    files = {}
    for doc in docs:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        volumes = {v["name"]: v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
        for container in k8s_containers([doc]):
            for mount in container.get("volumeMounts", []):
                for key, content in data.get(volumes.get(mount["name"], ""), {}).items():
                    files[f"{mount['mountPath']}/{key}"] = content
    return files


# --- checking them against the CLI ----------------------------------------------------------------------------
def _check_spelled_out(words: list[str], parser: argparse.ArgumentParser, where: str) -> None:
    """argparse also takes a flag's unambiguous prefix (--retain for --retain-epoch); a recipe spells flags out,
    so that a flag added later cannot make it ambiguous."""
    options = {o for action in parser._actions for o in action.option_strings}
    for word in words:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in options:
            raise AssertionError(f"{where}: {flag} is not one of its flags spelled out")


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def parse(inv: Invocation, values: dict[str, str]) -> Any:
    """The CLI's argparse namespace for ``inv`` (torchrun's own flags parsed by torchrun's parser first); raises
    AssertionError with argparse's message."""
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import parse_args as torchrun_parse_args

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            words = [substitute(w, values) for w in (inv.launcher or inv.words)]
            if inv.launcher:
                launch = torchrun_parse_args(words)
                assert launch.module and launch.training_script == "sanas.cli", "torchrun does not run -m sanas.cli"
                _check_spelled_out(words[:len(words) - len(launch.training_script_args)], get_args_parser(), "torchrun")
                words = launch.training_script_args
            args = build_parser().parse_args(words)
    except SystemExit:
        raise AssertionError((err.getvalue().strip() or "argparse exited").splitlines()[-1]) from None
    except (CLIError, KeyError) as e:
        raise AssertionError(str(e)) from None
    _check_spelled_out(words[1:], _subparser(args.command), f"sanas {args.command}")
    return args


def check(inv: Invocation, values: dict[str, str], configs: dict[str, str], tmp_path: Path) -> Any:
    """Parse ``inv``; then what its command would check first: a search's settings (config file plus flags), a
    train's tokens."""
    args = parse(inv, values)
    if args.command in ("search", "train") and args.config:
        config = Path(args.config) if Path(args.config).is_absolute() else ROOT / args.config
        if args.config in configs:
            config = tmp_path / Path(args.config).name
            config.write_text(configs[args.config])
        assert config.is_file(), f"--config {args.config}: no such file in the repository or the recipe"
        RunConfig.from_sources(config, overrides_from_args(args))
    if args.command == "train" and args.token:
        parse_tokens(args.token)
    return args


RECIPES = [path for path in EXPECTED if path.suffix != ".md"]


@pytest.mark.parametrize("path", list(EXPECTED), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_sanas_command_line_of_a_recipe_is_valid_for_the_cli(path: Path, tmp_path: Path) -> None:
    found = recipe_invocations(path)
    assert found, f"no sanas command line found in {path.name}"
    values, configs = container_values(path), config_maps(path)
    problems, commands = [], Counter()
    for inv in found:
        try:
            args = check(inv, values, configs, tmp_path)
        except (AssertionError, ValueError) as e:
            problems.append(f"{inv}\n    {e}")
            continue
        if inv.where == "code":
            commands[args.command] += 1
    assert not problems, "\n".join(problems)
    for command, n in EXPECTED[path].items():
        assert commands[command] >= n, f"{path.name}: found {dict(commands)} in its code, expected {EXPECTED[path]}"


def test_the_extractor_finds_what_a_recipe_line_hides() -> None:
    """Continuations, a torchrun launch, commands after && or in comments and backquotes, redirections."""
    text = ('#!/bin/bash\n#SBATCH --gres=gpu:1\n# run `sanas status runs/x` now, or\n#   sanas report runs/x --top 3\n'
            'x=1 && exec sanas worker "$RUN_DIR" \\\n    --worker-id "${SLURM_ARRAY_TASK_ID}" 2>&1 > log\n'
            'srun torchrun --nnodes 2 -m sanas.cli train --token "$TOKENS" | tee out\n')
    found = shell_invocations(text, SLURM_SEARCH)
    assert [(inv.where, inv.words[:1] or inv.launcher[:1]) for inv in found] == [
        ("comment", ["report"]), ("code", ["worker"]), ("code", ["--nnodes"]), ("comment", ["status"])]
    assert found[1].words == ["worker", "$RUN_DIR", "--worker-id", "${SLURM_ARRAY_TASK_ID}"]
    assert parse(found[2], VALUES).token == [VALUES["TOKENS"]]


def test_a_typo_in_a_recipe_flag_fails_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sbatch"
    bad.write_text(SLURM_SEARCH.read_text().replace("--worker-id", "--workerid"))
    [worker] = [inv for inv in recipe_invocations(bad) if inv.words[:1] == ["worker"] and inv.where == "code"]
    with pytest.raises(AssertionError, match="unrecognized arguments: --workerid"):
        check(worker, VALUES, {}, tmp_path)
    [short] = invocations_in("sanas worker --storag x --worker-id 3", bad, "code")
    with pytest.raises(AssertionError, match="--storag is not one of its flags spelled out"):
        check(short, VALUES, {}, tmp_path)  # argparse itself takes it, as --storage


def test_each_worker_takes_its_id_from_the_scheduler_and_its_storage_from_the_environment() -> None:
    for path, task in ((SLURM_SEARCH, "SLURM_ARRAY_TASK_ID"), (K8S_SEARCH, "JOB_COMPLETION_INDEX")):
        values = container_values(path)
        workers = [inv for inv in recipe_invocations(path) if inv.where == "code" and inv.words[:1] == ["worker"]]
        assert workers, path
        for inv in workers:
            for value in ("0", "7"):
                args = parse(inv, {**values, task: value, "SANAS_STORAGE": "sqlite:////shared/x.db"})
                assert args.worker_id == int(value) and args.storage == "sqlite:////shared/x.db", inv


def test_the_recipes_hold_no_password_and_ask_for_what_the_brief_needs() -> None:
    credentials = re.compile(r"\b[a-z0-9+]+://[^/\s:@]+:([^@\s/]+)@")
    for path in RECIPES:
        for password in credentials.findall(path.read_text()):
            assert password == "PASSWORD", f"{path.name} holds a password in a URL"
    text = SLURM_SEARCH.read_text()
    assert re.search(r"^#SBATCH --gres=gpu:1$", text, re.M) and re.search(r"^#SBATCH --array=0-\d+$", text, re.M)
    assert re.search(r"^#SBATCH --ntasks-per-node=1$", SLURM_FINAL.read_text(), re.M)  # one torchrun per node

    [job] = [d for d in yaml.safe_load_all(K8S_SEARCH.read_text()) if d["kind"] == "Job"]
    assert job["spec"]["completionMode"] == "Indexed"
    [container] = k8s_containers([job])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["SANAS_STORAGE"]["valueFrom"]
    final = list(yaml.safe_load_all(K8S_FINAL.read_text()))
    [job] = [d for d in final if d["kind"] == "Job"]
    [service] = [d for d in final if d["kind"] == "Service"]
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    for path in (K8S_SEARCH, K8S_FINAL):  # Kubernetes itself expands $(NAME) and $$ in a container's args
        for container in k8s_containers(list(yaml.safe_load_all(path.read_text()))):
            assert "$(" not in container_script(container) and "$$" not in container_script(container), path


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_the_scripts_are_valid_bash(path: Path, tmp_path: Path) -> None:
    scripts = ([container_script(c) for c in k8s_containers(list(yaml.safe_load_all(path.read_text())))]
               if path.suffix == ".yaml" else [path.read_text()])
    for script in scripts:
        proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"


def test_examples_readme_names_every_recipe() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in RECIPES:
        assert str(path.relative_to(EXAMPLES)) in readme


# --- running the worker scripts as the scheduler would ------------------------------------------------------
def scheduler_env(tmp_path: Path, path: Path, task: int, storage: str | None, run_dir: Path) -> dict[str, str]:
    """The environment of one array task / indexed pod: what SLURM or Kubernetes sets, no GPU, ``sanas`` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "sanas"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sanas.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SANAS_", "JOB_COMPLETION"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    if path.suffix == ".yaml":
        env.update(container_env(path))
        env.update(JOB_COMPLETION_INDEX=str(task), SANAS_RUN_DIR=str(run_dir))
    else:
        env.update(SLURM_JOB_ID=str(1000 + task + 1), SLURM_ARRAY_JOB_ID="1000", SLURM_ARRAY_TASK_ID=str(task),
                   SLURM_ARRAY_TASK_COUNT="8", SLURM_CPUS_PER_TASK="1", SANAS_RUN_DIR=str(run_dir))
    env["OMP_NUM_THREADS"] = "1"
    if storage is not None:
        env["SANAS_STORAGE"] = storage
    return env


def script_command(path: Path) -> list[str]:
    if path.suffix == ".yaml":
        [container] = k8s_containers([d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "Job"])
        return [*container["command"], container_script(container)]
    return ["bash", str(path)]


@pytest.mark.parametrize(("path", "storage"), [(SLURM_SEARCH, None), (SLURM_SEARCH, ""), (K8S_SEARCH, "")],
                         ids=["slurm-unset", "slurm-empty", "kubernetes-empty"])
def test_a_worker_without_a_storage_url_says_so_in_its_one_line_and_exits_2(path: Path, storage: str | None,
                                                                             tmp_path: Path) -> None:
    """The whole script, as array task / index 3: no wait for a study (the URL is wrong, not early), then the
    worker's own one-line error."""
    env = scheduler_env(tmp_path, path, 3, storage, tmp_path / "run")
    proc = subprocess.run(script_command(path), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"sanas worker 3: {STORAGE_ERROR}"]


def test_the_extracted_worker_line_without_a_storage_url_says_so_in_its_one_line_and_exits_2(tmp_path) -> None:
    [worker] = [inv for inv in recipe_invocations(SLURM_SEARCH) if inv.where == "code" and inv.words[:1] == ["worker"]]
    argv = [substitute(w, {**VALUES, "SANAS_STORAGE": "", "RUN_DIR": str(tmp_path / "run")}) for w in worker.words]
    proc = subprocess.run([sys.executable, "-m", "sanas.cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=scheduler_env(tmp_path, SLURM_SEARCH, 3, None, tmp_path / "run"), timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"sanas worker 3: {STORAGE_ERROR}"]


def tiny_study(tmp_path: Path) -> tuple[str, Path]:
    """A new tiny search's study (what `sanas search` creates before it evaluates anything) in an SQLite file."""
    run = tmp_path / "runs" / "c10"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    sa, _ = open_search(RunConfig.from_sources(overrides=TINY), run, storage=storage)
    sa.close()
    return storage, run


def assert_worker_did_the_search(storage: str, run: Path, worker_id: int, pid: int) -> None:
    study = optuna.load_study(study_name="sanas", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == TINY["search"]["search_steps"]
    assert {t.system_attrs[OWNER_KEY]["pid"] for t in done} == {pid}
    records = [json.loads(p.read_text()) for p in (run / "candidates").glob("trial-*.json")]
    assert sorted(r["trial"] for r in records) == sorted(t.number for t in done)
    assert {r["worker"] for r in records} == {worker_id}


@pytest.mark.slow
def test_the_extracted_slurm_worker_line_joins_a_study_and_works_under_its_array_index(tmp_path: Path) -> None:
    storage, run = tiny_study(tmp_path)
    [worker] = [inv for inv in recipe_invocations(SLURM_SEARCH) if inv.where == "code" and inv.words[:1] == ["worker"]]
    argv = [substitute(w, {**VALUES, "SANAS_STORAGE": storage, "RUN_DIR": str(run), "SLURM_ARRAY_TASK_ID": "3",
                           "SLURM_CPUS_PER_TASK": "1"}) for w in worker.words]
    proc = subprocess.Popen([sys.executable, "-m", "sanas.cli", *argv], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=scheduler_env(tmp_path, SLURM_SEARCH, 3, storage, run))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "worker 3: 3 evaluated, 0 failed" in out
    assert_worker_did_the_search(storage, run, 3, proc.pid)

    # The final-training recipes then train that study's best candidate: the tokens their scripts find (SLURM's
    # writes the report with `sanas report` first; Kubernetes' reads the one it left) are those of the report's best.
    from sanas.report.search import build_report
    from sanas.runs.study import load_study

    study, config = load_study(run, storage)
    best = build_report(study.get_trials(), config.build_space(), config).best
    assert best is not None
    env = {**scheduler_env(tmp_path, SLURM_FINAL, 0, storage, run), "RUN_DIR": str(run)}
    for path in (SLURM_FINAL, K8S_FINAL):
        text = container_script(k8s_containers(list(yaml.safe_load_all(path.read_text())))[0]) \
            if path.suffix == ".yaml" else path.read_text()
        [block] = re.findall(r'^ *if \[ -z "\$TOKENS" \]; then\n.*?^ *fi\n', text, re.M | re.S)
        proc = subprocess.run(["bash", "-c", block + 'printf "%s\\n" "$TOKENS"'], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert parse_tokens([proc.stdout]) == best.tokens, (path.name, proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("path", [SLURM_SEARCH, K8S_SEARCH], ids=["slurm", "kubernetes"])
def test_a_worker_script_waits_for_the_study_then_works_under_its_index(path: Path, tmp_path: Path) -> None:
    """The whole script as array task / index 2, started before the study exists (as beside task 0): it waits,
    then joins and works."""
    run = tmp_path / "runs" / "c10"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = subprocess.Popen(script_command(path), env=scheduler_env(tmp_path, path, 2, storage, run), cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The script's `sanas status` finds no study yet and the loop says it waits, on stderr: wait for that line.
    assert proc.stderr is not None
    waiting = proc.stderr.readline()
    assert "waiting for" in waiting, waiting
    storage, run = tiny_study(tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, waiting + err
    assert "worker 2: 3 evaluated, 0 failed" in out
    # The script ends in `exec sanas worker`: the shell's process is the worker's (the shim execs python too).
    assert_worker_did_the_search(storage, run, 2, proc.pid)
