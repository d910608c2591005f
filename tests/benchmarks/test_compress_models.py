"""The compression benchmark (benchmarks/compress_models.py): its networks, its harness, and the committed runs."""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import compress_models as cm  # noqa: E402
import harness  # noqa: E402
from harness import PassMeter, provenance  # noqa: E402
from sanas.spaces import ModelSpace  # noqa: E402
from sanas.spaces.inherit import IMPORTANCE  # noqa: E402
from sanas.training import Recipe, Trainer, prepare_data  # noqa: E402


@pytest.mark.parametrize("name", list(cm.MODELS))
def test_every_network_is_a_model_space_whose_counts_match_the_network(name: str) -> None:
    torch.manual_seed(0)
    net = cm.MODELS[name]()
    space = ModelSpace(net, example_input=[1, 32, 32])
    assert space.count_params(space.init_tokens()) == cm.params(net)
    assert space.count_macs(space.init_tokens()) == cm.macs(net)
    child = space.inherit(net, [1] * len(space.range_table()))
    assert child(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_the_pass_meter_charges_training_bn_evaluation_and_teacher_passes() -> None:
    torch.manual_seed(0)
    parent = cm.ResNet20().eval()
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1, val_fraction=0.25)
    train, val = len(data.train_indices), len(data.val_indices)
    recipe = Recipe(evaluation="inherit", retain_epoch=1, batch_size=16, bn_batches=2, distill=0.5, device="cpu")
    meter = PassMeter()
    with meter.active():
        trainer = Trainer(cm.FixedNet(parent), [0], data, recipe, parent=parent)
        trainer.reestimate_bn(recipe.bn_batches)
        trainer.run_epoch()  # trains one epoch, then scores the held-out split
    steps = recipe.steps_per_epoch(train)
    assert meter.train == train
    # BatchNorm batches, the held-out evaluation, and the teacher's forward on every training image
    assert meter.forward == 2 * 16 + val + train
    assert meter.epochs(train) == pytest.approx((train + (32 + val + train) / 3) / train)
    assert steps == trainer.steps_done
    # outside the meter, nothing is counted
    trainer.run_epoch()
    assert meter.train == train


def test_pruned_networks_get_the_final_fine_tune_of_every_method(tmp_path: Path) -> None:
    torch.manual_seed(0)
    parent = cm.MobileNetV2().eval()
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    out = cm.finetune(cm.FixedNet(parent), [0], parent, data, 0, 1, tmp_path / "final")
    assert out["params"] == cm.params(parent) and 0 <= out["test_top1"] <= 1
    assert out["final"]["train_images"] >= len(data.train_indices) and out["final"]["forward_images"] > 0
    assert (tmp_path / "final" / "model.json").exists()


def test_torch_pruning_baseline_fits_the_budget() -> None:
    parent = cm.ResNet20().eval()
    budget = int(0.7 * cm.params(parent))
    pruned, ratio = cm.tp_prune(parent, budget, global_pruning=False)
    assert cm.params(pruned) <= budget and 0 < ratio < 0.5 and pruned(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_provenance_names_the_commit_and_the_dirty_files_with_repository_paths() -> None:
    record = provenance("benchmarks/compress_models.py", {"work_dir": BENCHMARKS / "results" / "x"})
    assert record["settings"]["work_dir"] == "benchmarks/results/x"
    assert isinstance(record["dirty"], list) and record["git_commit"]


def test_provenance_lists_a_changed_file_by_its_whole_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git()'s output was strip()ped, so the first `status --porcelain` line lost its leading status column and its
    path its first letter ('enchmarks/data/...'), which then counted as a dirty code file."""
    import subprocess

    import harness

    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    for name in ("benchmarks/data/r.json", "src/x.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=tmp_path, check=True)
    for name in ("benchmarks/data/r.json", "src/x.py"):
        (tmp_path / name).write_text("b\n")
    monkeypatch.setattr(harness, "REPO", tmp_path)
    assert harness.provenance("s", {})["dirty"] == ["src/x.py"]


# The committed record folders -> their tables: the committed parents' runs, and those of a parent retrained on
# another machine, kept apart (benchmarks/README.md).
RECORD_SETS = {BENCHMARKS / "data" / "compress_models_runs": cm.OUT,
               BENCHMARKS / "data" / "second_parent" / "compress_models_runs":
                   BENCHMARKS / "data" / "second_parent" / "compress_models"}


def committed_runs() -> list[tuple[Path, Path]]:
    """Every committed run record, with the tables its set publishes (``OUT_<ratio>.md``)."""
    return [(path, out) for runs, out in RECORD_SETS.items() for path in sorted(runs.glob("*/*x/seed-*.json"))]


TRAIN_SUBSET = cm.build_parser().parse_args([]).train_subset


def test_committed_runs_hold_together() -> None:
    """Every committed run record: within its budget, counts that match the networks, costs that add up, and the
    table rows of finished runs in the committed tables."""
    for path, out in committed_runs():
        run = json.loads(path.read_text())
        name, ratio = path.parent.parent.name, float(path.parent.name.rstrip("x"))
        parent = json.loads((path.parent.parent / "parent.json").read_text())
        net = cm.MODELS[name]()
        assert parent["params"] == cm.params(net) and run["budget"] == int(ratio * parent["params"])
        for method in [*cm.METHODS, *cm.VARIANTS]:
            if method not in run:
                continue
            r = run[method]
            assert r["params"] <= run["budget"] and 0.5 < r["test_top1"] <= 1
            assert r["final"]["epochs"] >= run["final_epochs"]  # every pass charged: at least its training
        for method in ["sanas", *cm.VARIANTS]:
            if method not in run:
                continue
            space = ModelSpace(net, example_input=[1, 32, 32], granularity=run[method].get("granularity", "group"))
            tokens = run[method]["tokens"]
            assert space.count_params(tokens) == run[method]["params"]
            assert space.count_macs(tokens) == run[method]["macs"]
            assert all(r["params"] <= run["budget"] for r in run[method]["log"])
            assert run[method]["search"]["epochs"] > 0
            ran = {"importance": run[method].get("importance", harness.EARLIER_DEFAULT_IMPORTANCE),
                   "granularity": run[method].get("granularity", "group")}
            changes = cm.VARIANTS.get(method, {})
            assert all(ran[k] == v for k, v in changes.items() if k in ran)  # what the variant changes
            if "finalists" in changes:  # a schedule: as many candidates as its reference's epochs allowed
                assert ("finalists" in run[method]) == (int(changes["finalists"]) > 0)
                trained = run[method]["search"]["train_images"] / run[method]["candidates"]
                assert 0 < trained <= float(changes["retain_epoch"]) * TRAIN_SUBSET
                ref = run[cm.EQUAL_EPOCHS[method]]["search"]["epochs"]
                per = run[method]["search"]["epochs"] / run[method]["candidates"]
                assert run[method]["epochs_target"] == ref and abs(run[method]["search"]["epochs"] - ref) <= per
            if all(m in run for m in cm.METHODS):  # a finished run is in its budget's committed table
                table = cm.table_path(out, ratio).read_text()
                assert f"| {run['seed']} | {100 * run['tp_uniform']['test_top1']:.2f} |" in table
                assert f"{100 * run['sanas']['test_top1']:.2f} |" in table


def test_a_variant_is_sanas_with_one_setting_changed() -> None:
    args = cm.build_parser().parse_args(["--variants", "sanas_l1,sanas_bn,sanas_stage"])
    assert args.variants == ["sanas_l1", "sanas_bn", "sanas_stage"]
    assert {v["importance"] for v in cm.VARIANTS.values() if "importance" in v} == set(IMPORTANCE)
    assert cm.VARIANTS["sanas_stage"] == {"granularity": "stage"}
    with pytest.raises(SystemExit):
        cm.build_parser().parse_args(["--variants", "sanas_l3"])


@pytest.mark.parametrize(("argv", "says"), [
    (["--parent-epochs", "1"], "the parents' recipe (--parent-epochs, --parent-lr, --parent-batch): retain_epoch is 1"),
    (["--models", "resnet2"], "--models resnet2: expected networks among resnet20,mobilenetv2,vgg11"),
    (["--budget-ratio", "0.5,x"], "--budget-ratio is '0.5,x', expected comma-separated numbers in (0, 1]"),
    (["--budget-ratio", "1.5"], "--budget-ratio is '1.5', expected comma-separated numbers in (0, 1]"),
    (["--candidates", "0"], "--candidates 0: expected at least one"),
])
def test_a_bad_setting_is_one_line_and_exit_2_before_anything_runs(
        argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each was a traceback (or a KeyError after the data was read) until checked up front."""
    work, runs = tmp_path / "work", tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        cm.main([*argv, "--work-dir", str(work), "--runs-dir", str(runs), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err and "Traceback" not in err
    assert not work.exists() and not runs.exists() and not list(tmp_path.iterdir())


def test_the_committed_tables_keep_the_fine_tune_length_they_were_measured_with() -> None:
    """The product's default fine-tune became half the parent's epochs; every committed run here fine-tuned a
    quarter, so a resumed run must too, or its rows would not pair with theirs."""
    from sanas.training.final import final_epochs as product_final_epochs

    runs = sorted((BENCHMARKS / "data" / "compress_models_runs").glob("*/*x/seed-*.json"))
    assert runs
    for path in runs:
        record = json.loads(path.read_text())
        parent = json.loads((path.parents[1] / "parent.json").read_text())
        assert record["final_epochs"] == cm.final_epochs(parent["epochs"]), path
    assert cm.final_epochs(24) == 6 and product_final_epochs(24) == 12


def test_the_per_stage_row_names_what_it_changed_and_what_it_ran_with() -> None:
    stage = {"test_top1": 0.9, "importance": "l1", "granularity": "stage", "finalist_start": True}
    states = [{"sanas": {"test_top1": 0.9}, "sanas_stage": stage}] * 2
    label = cm.sanas_labels(states)["sanas_stage"]
    assert label.startswith("(c) sanas") and "granularity = stage" in label and "importance = l1" in label
    assert "the start among the finalists" in label
    older = [{"sanas": {"test_top1": 0.9}, "sanas_stage": {**stage, "finalist_start": False}}] * 2
    assert "the start among the finalists" not in cm.sanas_labels(older)["sanas_stage"]


def test_the_table_names_each_sanas_row_s_criterion_and_today_s_default() -> None:
    """(b) is "sanas with its defaults" as they were when it ran: once the default changes, its rows must say
    which criterion they ran with, not claim today's defaults."""
    old = {"sanas": {"test_top1": 0.9}, "sanas_l1": {"test_top1": 0.9, "importance": "l1"}}
    new = {"sanas": {"test_top1": 0.9, "importance": "bn"}, "sanas_l1": {"test_top1": 0.9, "importance": "l1"}}
    labels = cm.sanas_labels([old, new])
    assert labels["sanas"].startswith("(b)") and "importance = bn" in labels["sanas"]
    assert labels["sanas_l1"].startswith("(c)") and "importance = l1" in labels["sanas_l1"]
    default = [k for k in ("sanas", "sanas_l1") if "today's default" in labels[k]]
    assert default == [k for k, crit in (("sanas", "bn"), ("sanas_l1", "l1")) if crit == ModelSpace.default_importance]
    assert "mixed" in cm.sanas_labels([old, {**new, "sanas": {"test_top1": 0.9, "importance": "l1"}}])["sanas"]
    assert "sanas_l1" not in cm.sanas_labels([old, {"sanas": {"test_top1": 0.9}}])  # a variant every seed holds


def test_a_win_is_a_mean_difference_above_every_std() -> None:
    """A mean difference above the baseline's std but not above the paired differences' std is no win (ResNet-20 at
    0.5x once read as one: +0.13 points over a std of 0.13, the differences' std 0.23)."""
    assert cm.beats([0.9015, 0.9025, 0.9050], [0.9028, 0.9002, 0.9019])[2] is False
    diff, sd, wins = cm.beats([0.9047, 0.9023, 0.9026], [0.9001, 0.8989, 0.8986])
    assert wins and sd == pytest.approx(0.0013, abs=1e-4) and statistics.mean(diff) == pytest.approx(0.0040)
    assert cm.beats([0.95], [0.5])[2] is False  # one seed has no std


def test_every_budget_has_its_own_table(tmp_path: Path) -> None:
    """The tables of 0.3x, 0.5x and 0.7x were all written to compress_models_0.md (Path.with_suffix read ".5" as a
    suffix), each budget's overwriting the last."""
    assert len({cm.table_path(tmp_path / "t", r) for r in (0.3, 0.5, 0.7)}) == 3
    assert cm.table_path(tmp_path / "t", 0.5).name == "t_0.5.md"


def test_a_pruned_baseline_is_distilled_from_the_original_parent_like_sanas_child() -> None:
    """The baselines' fine-tune learns from the same teacher as sanas' child: the trained parent, not the pruned
    network itself (a pruned VGG-11 taught by its own pruned self ended at 60.7 % test top-1)."""
    torch.manual_seed(0)
    parent = cm.ResNet20().eval()
    pruned, _ = cm.tp_prune(parent, int(0.5 * cm.params(parent)), global_pruning=False)
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    recipe = Recipe(evaluation="inherit", retain_epoch=1, batch_size=16, bn_batches=1, device="cpu")
    trainer = Trainer(cm.FixedNet(pruned), [0], data, recipe, parent=parent)
    assert recipe.distill > 0 and trainer.teacher is not None
    assert cm.params(trainer.net) == cm.params(pruned) < cm.params(trainer.teacher) == cm.params(parent)


def small_search(work: Path, candidates: int, finalists: int | None = None,
                 epochs: float | None = None) -> tuple[Any, PassMeter, dict]:
    """``harness.sanas_search`` over VGG-11 at 0.5× on 48 synthetic images, metered: the data, the meter, the log."""
    torch.manual_seed(0)
    parent = cm.VGG11().eval()
    space = ModelSpace(parent, example_input=[1, 32, 32])
    data = prepare_data("synthetic", train_size=48, test_size=8, channels=1, val_fraction=0.25)
    recipe = Recipe(evaluation="inherit", batch_size=16, bn_batches=1, device="cpu")
    meter = PassMeter()
    with meter.active():
        _, log = harness.sanas_search("t", space, data, recipe, parent, int(0.5 * cm.params(parent)), 0, candidates,
                                      work, finalists, None if epochs is None else (meter, epochs))
    return data, meter, log


def test_the_meter_charges_the_finalists_of_a_search(tmp_path: Path) -> None:
    """The finalists fine-tune in a child process in the product; a benchmark's meter must still see them (their
    training images went uncounted in the first two committed runs, which were run again)."""
    data, meter, log = small_search(tmp_path, 3)
    assert len(log["finalists"]) == 3 and log["candidates"] == 3
    assert log["finalist_start"] is True and sum(f.get("start", False) for f in log["finalists"]) == 1
    # screening trains nothing; each finalist fine-tunes one epoch
    assert meter.train == 3 * len(data.train_indices)


def test_the_harness_leaves_crash_isolation_on_outside_a_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the harness once set SANAS_ISOLATION=none for the whole process: in the suite, the isolation tests
    that run after the benchmark tests then ran a segfaulting candidate in pytest's own process (CI died)."""
    import harness
    from sanas.runs.isolate import ISOLATION_ENV, start_method

    monkeypatch.delenv(ISOLATION_ENV, raising=False)
    importlib.reload(harness)
    assert ISOLATION_ENV not in os.environ and start_method() != "none"
    with harness.in_this_process():
        assert start_method() == "none"
    assert start_method() != "none"


def test_the_control_fine_tunes_the_uncompressed_parent_and_pairs_with_every_seed(tmp_path: Path) -> None:
    """The control row: the parent itself through the same final fine-tune, recorded per seed under control/; a
    table pairs it seed by seed or leaves it out."""
    import argparse

    torch.manual_seed(0)
    parent = cm.ResNet20().eval()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    args = argparse.Namespace(runs_dir=tmp_path / "runs", work_dir=tmp_path / "work")
    state = cm.control("resnet20", 1, parent, {"epochs": 2, "test_top1": 0.5}, data, args)
    out = state[cm.CONTROL]
    assert out["params"] == cm.params(parent) and 0 <= out["test_top1"] <= 1 and out["final"]["train_images"] > 0
    saved = json.loads((tmp_path / "runs" / "resnet20" / "control" / "seed-1.json").read_text())
    assert saved[cm.CONTROL] == out and saved["seed"] == 1 and saved["final_epochs"] == 1
    # the parent every method is compressed from is untouched
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())
    # done once: a second call reads the record
    assert cm.control("resnet20", 1, parent, {"epochs": 2, "test_top1": 0.5}, data, args) == state
    folder = tmp_path / "runs" / "resnet20"
    assert cm.control_states(folder, [{"seed": 0}, {"seed": 1}]) == []  # seed 0 has no control: no row
    assert cm.control_states(folder, [{"seed": 1}]) == [saved]


def test_a_schedule_variant_searches_at_the_epochs_of_its_reference_and_chooses_without_finalists(
        tmp_path: Path) -> None:
    """Issue 19's item 4: the ¼-epoch schedule (``sanas_quarter``) gets the epochs today's search spent, candidate
    after candidate, and keeps its best reward (no finalists); a run without its reference says so and skips it."""
    import argparse

    assert cm.VARIANTS["sanas_quarter"] == {"retain_epoch": "0.25", "finalists": "0"}
    assert cm.EQUAL_EPOCHS["sanas_quarter"] in cm.VARIANTS
    torch.manual_seed(0)
    parent = cm.VGG11().eval()
    data = prepare_data("synthetic", train_size=400, test_size=8, channels=1, val_fraction=0.25)
    args = argparse.Namespace(candidates=2)
    budget = int(0.5 * cm.params(parent))
    _, _, one = cm.sanas_search(parent, data, budget, 0, args, tmp_path / "one", label="q",
                                changes=cm.VARIANTS["sanas_quarter"], epochs=1e-6)
    assert one["candidates"] == 1 and one["search"]["train_images"] > 0  # fine-tuned, unlike a screened candidate
    target = 3.5 * one["search"]["epochs"]
    space, tokens, log = cm.sanas_search(parent, data, budget, 0, args, tmp_path / "more", label="q",
                                         changes=cm.VARIANTS["sanas_quarter"], epochs=target)
    assert "finalists" not in log and log["epochs_target"] == target
    # more candidates than --candidates: the epochs decide; one more would have gone past them
    assert log["candidates"] > args.candidates
    per = log["search"]["epochs"] / log["candidates"]
    assert log["search"]["epochs"] - per <= target < log["search"]["epochs"] + per
    assert space.count_params(tokens) <= budget  # the best screened reward is the choice
    assert max(r["reward"] for r in log["log"] if r["tokens"] == tokens) == max(
        r["reward"] for r in log["log"] if not r["stopped"])


def test_the_harness_ends_a_search_at_its_epochs_before_its_candidates(tmp_path: Path) -> None:
    _, meter, log = small_search(tmp_path, 8, finalists=0, epochs=0.5)
    assert 1 < log["candidates"] < 8 and "finalists" not in log
    assert meter.train == 0  # BatchNorm re-estimation and evaluations only: no finalists fine-tuned


def test_a_parent_trained_on_another_machine_stops_before_any_record(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU training is deterministic on one machine, not across them: a parent retrained elsewhere is another
    parent, and records made from it would sit beside the committed ones as if from the same. It stops — at the
    first epoch whose held-out top-1 differs from the committed curve, or at the digest — with one line, and
    writes no record; the same parent, or a runs folder of its own, goes on."""
    import argparse

    from sanas.spaces.model import weights_digest

    args = argparse.Namespace(work_dir=tmp_path / "work", runs_dir=tmp_path / "runs", parent_epochs=2,
                              parent_lr=0.05, parent_batch=64)
    committed = {"epochs": 2, "val_curve": [0.7044, 0.8], "test_top1": 0.9, "digest": "0123456789abcdef"}
    record = tmp_path / "runs" / "resnet20" / "parent.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(committed))

    def train(space: Any, data: Any, recipe: Any, out: Path, *, on_epoch: Any) -> dict[str, Any]:
        on_epoch(argparse.Namespace(epoch=0, val_top1=0.6808))  # this machine's first epoch
        raise AssertionError("trained past a first epoch that differs")

    monkeypatch.setattr(harness, "train_parent", train)
    with pytest.raises(cm.ParentMismatch, match=r"held-out top-1 68\.08% after epoch 1\).*\(70\.44%\).*--runs-dir"):
        cm.train_parent("resnet20", None, args)
    assert not (tmp_path / "work" / "resnet20" / "parent.json").exists()
    # a parent trained here earlier (no epochs left to compare): its digest decides
    torch.manual_seed(0)
    net = cm.ResNet20()
    (tmp_path / "work" / "resnet20" / "parent").mkdir(parents=True)
    from safetensors.torch import save_file
    save_file(net.state_dict(), tmp_path / "work" / "resnet20" / "parent" / "model.safetensors")
    (tmp_path / "work" / "resnet20" / "parent.json").write_text(json.dumps({"epochs": 2, "test_top1": 0.9}))
    with pytest.raises(cm.ParentMismatch) as e:
        cm.train_parent("resnet20", None, args)
    assert f"(digest {weights_digest(net)})" in str(e.value) and "(digest 0123456789abcdef)" in str(e.value)
    assert "\n" not in str(e.value) and json.loads(record.read_text()) == committed
    # a benchmark built on the records refuses through its parser: one line, exit 2
    monkeypatch.setattr(harness, "fashion_mnist", lambda *a: None)
    errors: list[str] = []

    def error(message: str) -> None:
        errors.append(message)
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        list(cm.with_parents("resnet20", tmp_path / "work", error, tmp_path / "runs"))
    assert errors == [str(e.value)]
    # kept apart: a runs folder of its own records this parent; the same parent then goes on
    args.runs_dir = tmp_path / "other"
    parent, info = cm.train_parent("resnet20", None, args)
    assert info["digest"] == weights_digest(net) == weights_digest(parent)
    assert json.loads((tmp_path / "other" / "resnet20" / "parent.json").read_text())["digest"] == info["digest"]
    assert cm.train_parent("resnet20", None, args)[1] == info
