"""Run configuration: defaults, TOML, flag overrides, budgets, identity checks, the saved file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sanas.runs.config import CONFIG_FILE, RunConfig, parse_budget


def test_budget_forms():
    assert parse_budget("1.0x", 3_767_302) == 3_767_302
    assert parse_budget("0.9X", 1000) == 900
    assert parse_budget("3.77M", 0) == 3_770_000
    assert parse_budget("500k", 0) == 500_000
    assert parse_budget(42_000, 0) == 42_000
    assert parse_budget("none", 5) is None and parse_budget(None, 5) is None
    for bad in ("lots", "1.0y", "", True, "0x"):
        with pytest.raises(ValueError, match="max_params is"):
            parse_budget(bad, 1000)


def test_sources_merge_in_order(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[space]\nlayers = 5\nfilter_num = [4, 8, 16, 32]\ninit_channels = 8\n'
                    '[data]\ndataset = "synthetic"\n[search]\nsearch_steps = 7\nmax_params = "0.5x"\n')
    config = RunConfig.from_sources(toml, {"search": {"search_steps": 9, "seed": None}, "recipe": {"batch_size": 8}})
    assert config.search["search_steps"] == 9  # flags beat the file
    assert config.search["max_params"] == "0.5x"  # the file beats defaults
    assert config.search["seed"] == 0 and config.search["reduce_rate"] == 0.85  # defaults; None flags are ignored
    space = config.build_space()
    assert space.layers == 5 and space.in_channels == 3
    assert config.budget(space) == space.count_params(space.init_tokens()) // 2
    assert config.build_recipe().batch_size == 8


def test_dataset_sets_channels():
    config = RunConfig.from_sources(None, {"data": {"dataset": "fashion-mnist"},
                                           "space": {"layers": 5, "filter_num": [4, 8, 16, 32], "init_channels": 8}})
    assert config.build_space().in_channels == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[serach]\nsearch_steps = 3\n", "unknown table(s) serach"),
        ("[search]\nsteps = 3\n", "unknown search setting(s) steps"),
        ("[recipe]\nepochs = 3\n", "unknown recipe setting(s) epochs"),
        ("[data]\ndataset = 'mnist'\n", "unknown dataset 'mnist'"),
        ("[search]\nsearch_steps = -1\n", "search_steps is -1"),
        ("search = 3\n", "search must be a table"),
        ("[search\n", "is not valid TOML"),
    ],
)
def test_bad_files_fail_early(tmp_path, text, message):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_sources(toml)


def test_save_load_and_identity(tmp_path):
    config = RunConfig.from_sources(None, {"data": {"dataset": "synthetic"}, "recipe": {"device": "cpu"}})
    config.save(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["data"]["dataset"] == "synthetic"
    loaded = RunConfig.load(tmp_path)
    loaded.check_matches(config, "here")
    # Where a process trains is not part of the search's identity; what it computes is.
    other = RunConfig.from_dict({**config.to_dict(), "recipe": {"device": "cuda"}})
    other.check_matches(config, "here")
    changed = RunConfig.from_dict({**config.to_dict(), "recipe": {"device": "cpu", "batch_size": 8}})
    with pytest.raises(ValueError, match=r"here was created with a different config \(recipe.batch_size: None"):
        changed.check_matches(config, "here")
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="is corrupt"):
        RunConfig.load(tmp_path)
    with pytest.raises(ValueError, match="not a sanas run directory"):
        RunConfig.load(tmp_path / "elsewhere")


def test_search_defaults_come_from_the_search_package_and_old_configs_keep_their_t0(tmp_path) -> None:
    from sanas.search.chain import DEFAULT_INIT_TEMPERATURE, DEFAULT_REDUCE_RATE
    from sanas.search.samplers import DEFAULT_SAMPLER

    config = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    assert config.search["init_temperature"] == DEFAULT_INIT_TEMPERATURE == "auto"
    assert config.search["reduce_rate"] == DEFAULT_REDUCE_RATE and config.search["sampler"] == DEFAULT_SAMPLER
    old = config.to_dict()
    old["search"]["init_temperature"] = None  # written before "auto" existed, when None meant PaddleSlim's 1.0
    assert RunConfig.from_dict(old).search["init_temperature"] == 1.0
    for key, bad, message in [("init_temperature", "hot", "init_temperature is 'hot'"),
                              ("init_temperature", float("nan"), "init_temperature is nan"),
                              ("reduce_rate", 0, "reduce_rate is 0"),
                              ("sampler", "annealing", "sampler is 'annealing'")]:
        with pytest.raises(ValueError, match=message):
            RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "search": {key: bad}})


def test_a_config_saved_before_the_budget_band_resumes_with_plain_moves(tmp_path) -> None:
    config = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    assert (config.search["move"], config.search["fill"], config.search["max_macs"]) == ("fill", 0.95, None)
    old = config.to_dict()
    for key in ("move", "fill", "max_macs"):
        del old["search"][key]  # a run directory made before these settings existed searched with plain moves
    loaded = RunConfig.from_dict(old)
    assert loaded.search["move"] == "plain"
    with pytest.raises(ValueError, match=r"search\.move: 'plain' there, 'fill' now"):
        config.check_matches(loaded, "run directory r")
    RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "search": {"move": "plain"}}).check_matches(
        loaded, "run directory r")


def test_a_run_saved_before_the_start_among_the_finalists_resumes_without_it(tmp_path) -> None:
    """The start among the finalists is on for a new run; a run directory made before the setting existed chose
    among its best screened alone, loads that way, and is refused by a command that would now change its
    choice, naming the setting that resumes it."""
    from sanas.cli import build_parser, overrides_from_args

    config = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    assert config.search["finalist_start"] is True
    old = config.to_dict()
    del old["search"]["finalist_start"]
    loaded = RunConfig.from_dict(old)
    assert loaded.search["finalist_start"] is False
    with pytest.raises(ValueError, match=r"search\.finalist_start: False there, True now"):
        config.check_matches(loaded, "run directory r")
    args = build_parser().parse_args(["search", "--dataset", "synthetic", "--no-finalist-start"])
    RunConfig.from_sources(overrides=overrides_from_args(args)).check_matches(loaded, "run directory r")
    toml = tmp_path / "c.toml"
    toml.write_text('[search]\nfinalist_start = "yes"\n')
    with pytest.raises(ValueError, match="finalist_start is 'yes', expected true or false"):
        RunConfig.from_sources(toml)


def test_a_run_keeps_the_channel_criterion_it_started_with(monkeypatch) -> None:
    """The criterion is saved with the run: a run directory made when every space kept BatchNorm |γ| (and saved no
    criterion) resumes with it for DARTS, whose default it still is, and a ModelSpace run made then is refused by a
    command that would now keep other channels (group_l2), naming the setting that restores it; so is a run that
    saved filter L1 (ModelSpace's default before), and it resumes with ``--importance l1``."""
    darts = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    assert darts.recipe["importance"] == "bn"
    old = darts.to_dict()
    del old["recipe"]["importance"]
    darts.check_matches(RunConfig.from_dict(old), "run directory r")
    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "spaces")  # the entry point's module is importable
    model = {"name": "ModelSpace", "model": "_cnn_models:trained_resnet"}
    now = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic", "channels": 1}, "space": model})
    assert now.recipe["importance"] == "group_l2"
    before = now.to_dict()
    del before["recipe"]["importance"]
    with pytest.raises(ValueError, match=r"recipe\.importance: 'bn' there, 'group_l2' now"):
        now.check_matches(RunConfig.from_dict(before), "run directory r")
    RunConfig.from_sources(overrides={"data": {"dataset": "synthetic", "channels": 1}, "space": model,
                                      "recipe": {"importance": "bn"}}).check_matches(RunConfig.from_dict(before), "r")
    before["recipe"]["importance"] = "l1"
    with pytest.raises(ValueError, match=r"recipe\.importance: 'l1' there, 'group_l2' now"):
        now.check_matches(RunConfig.from_dict(before), "run directory r")
    RunConfig.from_sources(overrides={"data": {"dataset": "synthetic", "channels": 1}, "space": model,
                                      "recipe": {"importance": "l1"}}).check_matches(RunConfig.from_dict(before), "r")


def test_a_run_keeps_the_cutout_it_started_with() -> None:
    """Cutout is saved with the run: 16 from scratch, none for an inherit search (since the fine-tune from a parent
    trained without it was measured to lose to it). A run directory made before (which saved no cutout and trained
    with 16 everywhere) resumes with 16; a command that would now fine-tune without it is refused, naming the
    setting that resumes it."""
    from sanas.cli import build_parser, overrides_from_args

    scratch = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    assert scratch.recipe["cutout"] == 16 and scratch.build_recipe().cutout == 16
    inherit = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "recipe": {"evaluation": "inherit"}})
    assert inherit.recipe["cutout"] == 0 and inherit.build_recipe().cutout == 0
    for config in (scratch, inherit):
        old = config.to_dict()
        del old["recipe"]["cutout"]
        assert RunConfig.from_dict(old).recipe["cutout"] == 16
    scratch.check_matches(RunConfig.from_dict({**scratch.to_dict(), "recipe": {
        k: v for k, v in scratch.recipe.items() if k != "cutout"}}), "run directory r")
    before = inherit.to_dict()
    del before["recipe"]["cutout"]
    with pytest.raises(ValueError, match=r"recipe\.cutout: 16 there, 0 now"):
        inherit.check_matches(RunConfig.from_dict(before), "run directory r")
    args = build_parser().parse_args(["search", "--dataset", "synthetic", "--evaluation", "inherit", "--cutout", "16"])
    RunConfig.from_sources(overrides=overrides_from_args(args)).check_matches(RunConfig.from_dict(before), "r")
    with pytest.raises(ValueError, match=r"cutout is -1, expected a non-negative size in pixels \(0 = off\)"):
        RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}, "recipe": {"cutout": -1}})


def test_where_a_machine_keeps_its_data_or_finds_the_model_is_never_a_config_change() -> None:
    base = RunConfig.from_sources(overrides={"data": {"dataset": "synthetic"}})
    local = RunConfig.from_dict({**base.to_dict(), "data": {**base.data, "storage": "memory", "cache_dir": "/x"}})
    local.check_matches(base, "run directory r")  # streamed or in memory, cached anywhere: the same search
    other = RunConfig.from_dict({**base.to_dict(), "data": {**base.data, "input_size": [48, 48]}})
    with pytest.raises(ValueError, match=r"data.input_size: None there, \[48, 48\] now"):
        other.check_matches(base, "run directory r")
