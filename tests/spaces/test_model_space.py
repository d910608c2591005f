"""ModelSpace: width search over a user's own trained network — tokens, exact counts, inheritance, export, errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _cnn_models import (
    Chain,
    ChainWithResidual,
    ConcatFlatten,
    DataDependent,
    HardCodedWidth,
    MobileNetV2,
    OnlyLinear,
    ResNet,
    SpatialSoftmax,
    randomise,
    trained_resnet,
)
from torch.utils.flop_counter import FlopCounterMode

from _configs import inherit_toml
from sanas import SANAS, get_space, inherit, space_from_config
from sanas.cli import main
from sanas.search.early_stop import StopRule
from sanas.spaces import model as model_module
from sanas.spaces.inherit import channel_importance
from sanas.spaces.model import ModelSpace, forward_digest, load_entry_point, weights_digest
from sanas.training import Recipe, evaluate_candidate, load_model, prepare_data

HERE = Path(__file__).parent
X = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net = randomise(ResNet(blocks=2))
    return net, ModelSpace(net, example_input=X)


def random_tokens(space, rng):
    return [rng.randrange(r) for r in space.range_table()]


def test_tokens_are_ratios_of_the_trained_widths(resnet):
    net, space = resnet
    assert len(space.range_table()) == 9  # 3 residual streams + 6 inner groups; fc's outputs are the classes
    assert space.range_table() == [7] * 9  # ratios 0.25, 0.375, ..., 1.0 of 8, 16 or 32 channels, all distinct
    assert space.token_widths()[0] == [2, 3, 4, 5, 6, 7, 8]
    assert space.widths(space.init_tokens()) == [g.width for g in space.graph.groups]
    assert space.count_params(space.init_tokens()) == sum(p.numel() for p in net.parameters())
    assert [name for name, _, _ in space.frozen] == ["fc"]


def test_built_children_match_the_analytic_counts(resnet):
    _, space = resnet
    rng = random.Random(0)
    for tokens in [[0] * 9] + [random_tokens(space, rng) for _ in range(5)]:
        child = space.token2arch(tokens).eval()
        assert sum(p.numel() for p in child.parameters()) == space.count_params(tokens)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            child(X[:1])
        assert counter.get_total_flops() == 2 * space.count_macs(tokens)
        assert child.sanas_space is space and child.sanas_tokens == tokens


def test_macs_at_another_input_size(resnet):
    _, space = resnet
    tokens = [3] * 9
    child = space.token2arch(tokens).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        child(torch.zeros(1, 1, 24, 40))
    assert counter.get_total_flops() == 2 * space.count_macs(tokens, (24, 40))


def test_a_space_is_the_same_for_any_batch_of_examples_and_at_another_input_size():
    # Issue #20: with a batch-4 example, SpatialSoftmax's groups differed from the batch-1 trace count_macs made
    # at another input size ("has other channel groups at input size (24, 40)").
    torch.manual_seed(0)
    net = SpatialSoftmax()
    space, one = ModelSpace(net, example_input=X), ModelSpace(net, example_input=X[:1])
    assert space.token_groups() == one.token_groups() == [["conv2"]] and space.frozen == one.frozen
    tokens = [2]
    child = space.token2arch(tokens).eval()
    for size in ((32, 32), (24, 40)):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            child(torch.zeros(1, 1, *size))
        assert counter.get_total_flops() == 2 * space.count_macs(tokens, size) == 2 * one.count_macs(tokens, size)
    assert space.count_params(tokens) == one.count_params(tokens) == sum(p.numel() for p in child.parameters())


def chain_and_residual():
    """:class:`Chain` and :class:`ChainWithResidual` with the same weights."""
    torch.manual_seed(0)
    plain = randomise(Chain())
    residual = ChainWithResidual()
    residual.load_state_dict(plain.state_dict())
    assert weights_digest(plain) == weights_digest(residual)
    return plain, residual


def test_the_trace_cache_tells_apart_models_that_differ_only_in_their_forward():
    # Issue #20: the cache was keyed on the weights, so the residual model got the chain's groups and its children
    # with conv0 and conv1 at two widths crashed.
    plain, residual = chain_and_residual()
    assert forward_digest(plain) != forward_digest(residual)
    assert ModelSpace(plain, example_input=X).token_groups() == [["conv0"], ["conv1"], ["conv2"]]
    space = ModelSpace(residual, example_input=X)
    assert space.token_groups() == [["conv0 (+1 coupled)"], ["conv2"]]
    tokens = [0, len(space.token_widths()[1]) - 1]
    assert space.inherit(residual, tokens)(X).shape == (4, 10)


def test_forward_digest_sees_flags_and_layer_settings_but_not_weights():
    plain, _ = chain_and_residual()
    again = Chain()
    assert forward_digest(again) == forward_digest(plain) and weights_digest(again) != weights_digest(plain)
    again.conv2.stride = (1, 1)  # same weights, other feature-map sizes and MACs
    assert forward_digest(again) != forward_digest(plain)


def test_groups_that_do_not_fit_the_forward_are_refused_at_construction(monkeypatch):
    # A trace that misses a coupling (here: the chain's, given to the residual model) passes the narrowest child,
    # where every group shrinks alike; a child with mixed widths breaks.
    plain, residual = chain_and_residual()
    chain_graph = model_module.trace_channels(plain, X)
    monkeypatch.setattr(model_module, "_TRACES", {})
    monkeypatch.setattr(model_module, "trace_channels", lambda model, example: chain_graph)
    with pytest.raises(ValueError, match=r"^ChainWithResidual breaks when its groups take different widths \(conv0 "
                                         r"at 2, conv1 at 8, conv2 at 4\): RuntimeError: .*its forward ties "
                                         r"channels of groups sanas found apart$"):
        ModelSpace(residual, example_input=X)


def test_stage_granularity_ties_repeating_groups(resnet):
    net, _ = resnet
    space = ModelSpace(net, example_input=X, granularity="stage")
    assert space.token_groups() == [["conv (+2 coupled)"], ["layers.0.conv1", "layers.1.conv1"],
                                    ["layers.2.conv1", "layers.3.conv1"], ["layers.2.conv2 (+2 coupled)"],
                                    ["layers.4.conv1", "layers.5.conv1"], ["layers.4.conv2 (+2 coupled)"]]
    tokens = [0, 6, 0, 6, 0, 6]
    child = space.token2arch(tokens)
    assert [child.layers[i].conv1.out_channels for i in range(6)] == [8, 8, 4, 4, 8, 8]
    assert [child.layers[i].conv2.out_channels for i in range(6)] == [2, 2, 16, 16, 32, 32]
    assert sum(p.numel() for p in child.parameters()) == space.count_params(tokens)


def test_ratio_step_and_widening_ratios():
    net = ResNet()
    space = ModelSpace(net, example_input=X, min_ratio=0.5, max_ratio=1.5, ratio_step=0.25)
    assert space.token_widths()[0] == [4, 6, 8, 10, 12] and space.init_tokens()[0] == 2


def test_same_tokens_inherit_the_parent_exactly(resnet):
    net, space = resnet
    child = space.inherit(net, space.init_tokens()).eval()
    with torch.no_grad():
        assert torch.equal(child(X), net(X))
    assert child is not net and child.sanas_tokens == space.init_tokens()


@pytest.mark.parametrize("model", [ResNet, MobileNetV2, ConcatFlatten], ids=lambda c: c.__name__)
def test_inherited_children_have_the_analytic_parameter_count(model):
    torch.manual_seed(0)
    net = randomise(model())
    space = ModelSpace(net, example_input=X)
    rng = random.Random(1)
    for importance in ("bn", "l1", "group_l2"):
        for _ in range(3):
            tokens = random_tokens(space, rng)
            child = space.inherit(net, tokens, importance).eval()
            assert sum(p.numel() for p in child.parameters()) == space.count_params(tokens)
            assert child(X).shape == (4, 10)


def test_inherit_keeps_the_channels_with_the_largest_bn_scales(resnet):
    net, space = resnet
    k = space.token_groups().index(["layers.0.conv1"])
    tokens = space.init_tokens()
    tokens[k] = 0  # 2 of 8 channels
    child = space.inherit(net, tokens, "bn")
    gamma = net.layers[0].bn1.weight.detach()
    keep = torch.sort(torch.topk(gamma.abs(), 2).indices).values
    assert torch.equal(child.layers[0].bn1.weight.detach(), gamma[keep])
    assert torch.equal(child.layers[0].conv2.weight.detach(), net.layers[0].conv2.weight.detach()[:, keep])


def _weakest_made_heavy_downstream(weights_out: torch.Tensor, reader: torch.Tensor, repeat: int = 1) -> int:
    """The channel with the smallest producing filter, its reader's input slice made the largest of all."""
    weak = int(weights_out.detach().pow(2).flatten(1).sum(1).argmin())
    with torch.no_grad():
        reader[:, weak * repeat:(weak + 1) * repeat] *= 1000.0
    return weak


def test_group_l2_counts_every_weight_of_a_channel_across_its_group(resnet):
    """"group_l2": the squared weights of the producing filters, γ and the readers' input slices, summed; a channel
    weak where it is produced but heavy where it is read is kept (by "l1" and "bn" it would be dropped), and a
    flattened channel counts all the positions it fills in the linear layer that reads it."""
    import copy

    net, space = resnet
    net = copy.deepcopy(net)
    k = space.token_groups().index(["layers.0.conv1"])
    conv1, bn1, conv2 = net.layers[0].conv1.weight, net.layers[0].bn1.weight, net.layers[0].conv2.weight
    weak = _weakest_made_heavy_downstream(conv1, conv2.data)
    score = (conv1.detach().pow(2).flatten(1).sum(1) + bn1.detach().pow(2)
             + conv2.detach().pow(2).transpose(0, 1).flatten(1).sum(1))
    keep = torch.sort(torch.topk(score, 2).indices).values
    assert weak in keep.tolist()
    tokens = space.init_tokens()
    tokens[k] = 0  # 2 of 8 channels
    assert torch.equal(space.inherit(net, tokens, "group_l2").layers[0].bn1.weight.detach(), bn1.detach()[keep])
    assert weak not in torch.topk(conv1.detach().abs().flatten(1).sum(1), 2).indices.tolist()

    torch.manual_seed(0)
    flat = randomise(ConcatFlatten())
    flat_space = ModelSpace(flat, example_input=X)
    k = flat_space.token_groups().index(["left"])
    weak = _weakest_made_heavy_downstream(flat.left.weight, flat.fc1.weight.data, repeat=64)  # 8 × 8 after pooling
    score = flat.left.weight.detach().pow(2).flatten(1).sum(1) + flat.fc1.weight.detach().pow(2).view(24, 10, 64)[
        :, :6].sum((0, 2))
    tokens = flat_space.init_tokens()
    tokens[k] = 0
    child = flat_space.inherit(flat, tokens, "group_l2")
    width = child.left.weight.shape[0]
    keep = torch.sort(torch.topk(score, width).indices).values
    assert weak in keep.tolist() and width < 6
    group = flat_space.graph.layout["left.weight"][0].segments[0].group
    names = [f"{n}.weight" for n in ("stem", "bn", "left", "right", "fc1", "fc2")]
    scores = channel_importance(flat.state_dict(), flat_space.graph.layout, dict(enumerate(flat_space.graph.widths)),
                                "group_l2", names[1:2], names[:1] + names[2:])
    torch.testing.assert_close(scores[group], score.double())
    assert torch.equal(child.left.weight.detach(), flat.left.weight.detach()[keep])
    assert child(X).shape == (4, 10)


def test_a_model_space_keeps_the_largest_group_l2_unless_told_otherwise(resnet):
    """ModelSpace's default criterion is "group_l2" (the built-in spaces keep "bn"), for ``inherit`` and for a recipe
    that names none; in this group the three criteria disagree, so keeping another one shows."""
    import copy

    from sanas.training import Trainer

    net, space = resnet
    net = copy.deepcopy(net)
    k = space.token_groups().index(["layers.0.conv1"])
    tokens = space.init_tokens()
    tokens[k] = 0  # 2 of 8 channels
    conv1, conv2 = net.layers[0].conv1.weight, net.layers[0].conv2.weight
    gamma = net.layers[0].bn1.weight.detach()
    top2 = lambda v: torch.sort(torch.topk(v, 2).indices).values  # noqa: E731
    by_l1, by_bn = top2(conv1.detach().abs().flatten(1).sum(1)), top2(gamma.abs())
    heavy = min(set(range(8)) - set(by_l1.tolist()) - set(by_bn.tolist()))  # kept by neither: made heavy where read
    with torch.no_grad():
        conv2[:, heavy] *= 1000.0
    by_group = top2(conv1.detach().pow(2).flatten(1).sum(1) + gamma.pow(2)
                    + conv2.detach().pow(2).transpose(0, 1).flatten(1).sum(1))
    assert heavy in by_group.tolist() and not torch.equal(by_group, by_l1) and not torch.equal(by_group, by_bn)
    assert Recipe().importance is None and space.default_importance == "group_l2"
    assert get_space("DartsSpace").default_importance == "bn"
    assert torch.equal(space.inherit(net, tokens).layers[0].bn1.weight.detach(), gamma[by_group])
    assert torch.equal(inherit(net, tokens, space).layers[0].bn1.weight.detach(), gamma[by_group])  # sanas.inherit
    data = prepare_data("synthetic", train_size=32, test_size=8, channels=space.in_channels)
    for recipe, keep in ((Recipe(evaluation="inherit", device="cpu"), by_group),
                         (Recipe(evaluation="inherit", device="cpu", importance="l1"), by_l1),
                         (Recipe(evaluation="inherit", device="cpu", importance="bn"), by_bn)):
        child = Trainer(space, tokens, data, recipe, parent=net).net
        assert torch.equal(child.layers[0].bn1.weight.detach(), gamma[keep])


def test_widened_child_computes_the_parents_function():
    torch.manual_seed(0)
    net = randomise(ResNet())
    space = ModelSpace(net, example_input=X, max_ratio=2.0)
    wide = [len(w) - 1 for w in space.token_widths()]
    child = space.inherit(net, wide).eval()
    assert sum(p.numel() for p in child.parameters()) == space.count_params(wide) > space.count_params(
        space.init_tokens())
    with torch.no_grad():
        assert (child(X) - net(X)).abs().max() < 1e-4


def test_sanas_inherit_finds_the_space_on_a_child(resnet):
    net, space = resnet
    parent = space.inherit(net, [5] * 9)
    child = inherit(parent, [2] * 9)
    assert sum(p.numel() for p in child.parameters()) == space.count_params([2] * 9)


def test_export_runs_without_sanas_and_matches(resnet, tmp_path):
    net, space = resnet
    child = space.inherit(net, [1, 2, 3, 4, 5, 6, 0, 1, 2]).eval()
    space.export(child, tmp_path / "child.pt2")
    # sanas made unimportable: the program needs PyTorch only (and not the model's code: cwd is elsewhere).
    code = ("import sys; sys.modules['sanas'] = None; import torch; m = torch.export.load(sys.argv[1]).module(); "
            "x = torch.load(sys.argv[2]); torch.save(m(x), sys.argv[3])")
    torch.save(X[:3].clone(), tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "child.pt2"), str(tmp_path / "x.pt"),
                    str(tmp_path / "y.pt")], check=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt", weights_only=True), child(X[:3]), atol=1e-5)


def test_scratch_evaluation_trains_through_the_trainer(resnet):
    _, space = resnet
    data = prepare_data("synthetic", train_size=64, test_size=16, channels=1)
    result = evaluate_candidate([2] * 9, space, data, Recipe(retain_epoch=2, batch_size=16, device="cpu", cutout=0),
                                progress="none")
    assert result.status == "ok" and 0.0 <= result.reward <= 1.0 and result.params == space.count_params([2] * 9)


def test_sanas_searches_under_a_budget(resnet):
    _, space = resnet
    budget = int(0.7 * space.count_params(space.init_tokens()))
    sa = SANAS(space, search_steps=6, save_checkpoint=None, max_params=budget, init_tokens=[3] * 9)
    while (tokens := sa.next_tokens()) is not None:
        assert space.count_params(tokens) <= budget
        sa.reward(sum(tokens) / 100)
    assert sa.current_info()["finished"] == 6


def test_entry_point_and_config_round_trip(monkeypatch):
    monkeypatch.chdir(HERE)
    space = get_space([("ModelSpace", {"model": "_cnn_models:trained_resnet", "in_channels": 1})])
    assert space.config()["model"] == "_cnn_models:trained_resnet"
    assert space.config()["example_input"] == [1, 32, 32] and space.num_classes == 10
    again = space_from_config(space.config())
    assert again.fingerprint() == space.fingerprint()
    from_file = ModelSpace(f"{HERE / '_cnn_models.py'}:trained_resnet", in_channels=1)
    assert from_file.digest == space.digest


def test_a_space_from_a_model_object_cannot_be_rebuilt_from_its_config(resnet):
    _, space = resnet
    config = space.config()
    assert config["model"] is None
    with pytest.raises(ValueError, match="needs model="):
        space_from_config(config)


@pytest.mark.parametrize(("spec", "message"), [
    ("_cnn_models", r"not 'module:function'"),
    ("no_such_module_xyz:f", r"cannot load 'no_such_module_xyz' .*ModuleNotFoundError"),
    ("_cnn_models:missing", r"_cnn_models has no function 'missing'"),
    ("_cnn_models:not_a_model", r"returned int, expected a torch.nn.Module"),
    ("nowhere/file.py:f", r"cannot load 'nowhere/file.py' .*no file"),
])
def test_bad_entry_points(monkeypatch, spec, message):
    monkeypatch.chdir(HERE)
    with pytest.raises(ValueError, match=message):
        load_entry_point(spec)


def test_an_entry_point_that_raises_or_needs_an_argument_is_one_line_quoting_it(tmp_path, monkeypatch):
    (tmp_path / "broken_models_xyz.py").write_text("def raises():\n    raise RuntimeError('weights file gone')\n\n"
                                                   "def needs(path):\n    return path\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as raised:
        load_entry_point("broken_models_xyz:raises")
    assert str(raised.value) == ("model entry point 'broken_models_xyz:raises' raised RuntimeError: weights file gone "
                                 "(at broken_models_xyz.py:2); expected a function without arguments that returns "
                                 "the trained model")
    with pytest.raises(ValueError, match=r"'broken_models_xyz:needs' raised TypeError: needs\(\) missing 1 required "
                                         r"positional argument: 'path'; expected a function without arguments"):
        load_entry_point("broken_models_xyz:needs")


def test_a_grouping_that_runs_but_maps_channels_wrongly_is_refused(monkeypatch):
    """Shapes cannot rule out every misreading (a channel shuffle written view(b, c // g, g, h, w)): the space checks
    that a child computes the model on the channels it keeps. Here inheritance is made to keep the wrong channels."""
    real = model_module.inherit_state

    def reversed_channels(parent, child, layout, parent_widths, child_widths, importance):
        state = real(parent, child, layout, parent_widths, child_widths, importance)
        return {k: v.flip(0) if k.endswith("conv1.weight") else v for k, v in state.items()}

    monkeypatch.setattr(model_module, "inherit_state", reversed_channels)
    with pytest.raises(ValueError, match=r"ResNet: a child does not compute the model on the channels it keeps "
                                         r"\(.*outputs differ by .*\); sanas has misread how its channels are coupled"):
        ModelSpace(ResNet(), example_input=X)


def test_bad_models_say_what_to_do():
    with pytest.raises(ValueError, match=r"OnlyLinear has no channel group sanas can search \(fc \(10 ch\) reaches "
                                         r"the model's output\)"):
        ModelSpace(OnlyLinear(), example_input=X)
    with pytest.raises(ValueError, match=r"cannot trace DataDependent: its control flow depends on the input's "
                                         r"values \(at _cnn_models.py:\d+ in forward"):
        ModelSpace(DataDependent(), example_input=X)
    with pytest.raises(ValueError, match=r"HardCodedWidth breaks when group conv2 \(16 channels\) shrinks to 4: "
                                         r"RuntimeError: .*hard-codes this width"):
        ModelSpace(HardCodedWidth(), example_input=X)
    with pytest.raises(ValueError, match=r"group 0 \(conv \(\+1 coupled\), 8 channels\): no ratio in \[0.3, 0.5, 0.7, "
                                         r"0.9\] gives its trained width 8"):
        ModelSpace(ResNet(), example_input=X, min_ratio=0.3, ratio_step=0.2)
    with pytest.raises(ValueError, match=r"fails on an example input of shape \(2, 3, 32, 32\)"):
        ModelSpace(ResNet(), example_input=[3, 32, 32])
    with pytest.raises(ValueError, match=r"num_classes is 7 but ResNet outputs 10"):
        ModelSpace(ResNet(), example_input=X, num_classes=7)
    with pytest.raises(ValueError, match=r"granularity is 'cell'"):
        ModelSpace(ResNet(), example_input=X, granularity="cell")
    with pytest.raises(ValueError, match=r"weights digest .* expected 0000"):
        ModelSpace(ResNet(), example_input=X, model_digest="0000")


def test_cli_bad_model_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(HERE)
    run_dir = tmp_path / "run"
    for model in ("_cnn_models:not_a_model", "_cnn_models:missing"):
        assert main(["search", "--model", model, "--dataset", "synthetic", "--run-dir", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sanas search: error: model entry point") and "\n" not in err
    assert not run_dir.exists()


def test_inherit_evaluation_with_early_stop(resnet):
    net, space = resnet
    assert space.trained_parent() is net
    data = prepare_data("synthetic", train_size=96, test_size=16, channels=1)
    recipe = Recipe(evaluation="inherit", retain_epoch=1, batch_size=16, cutout=0, device="cpu", bn_batches=2,
                    stop_checks=2)
    tokens = [3] * 9
    full = evaluate_candidate(tokens, space, data, recipe, progress="none", parent=space.trained_parent())
    assert full.status == "ok" and not full.stopped and full.epochs == pytest.approx(1.0)
    assert [c[0] for c in full.curve] == [0.0, pytest.approx(0.5, abs=0.1), pytest.approx(1.0)]
    stopped = evaluate_candidate(tokens, space, data, recipe, progress="none", parent=net,
                                 stop_rule=StopRule(threshold=2.0, margins=(0.0, 0.0)))
    assert stopped.stopped and stopped.epochs == 0.0 and stopped.reward == full.curve[0][1]


INHERIT_SEARCH = inherit_toml('search_steps = 4\nmax_params = "0.7x"\n', retain_epoch=0.5, bn_batches=2,
                              space='[space]\nname = "ModelSpace"\nmodel = "_cnn_models:trained_resnet"\n')


@pytest.mark.slow
def test_inherit_search_from_the_cli_compresses_the_model_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(HERE)  # the entry point's module is importable from the working directory
    (tmp_path / "search.toml").write_text(INHERIT_SEARCH)
    run = tmp_path / "run"
    assert main(["search", "--config", str(tmp_path / "search.toml"), "--run-dir", str(run), "--progress", "none",
                 "--no-report"]) == 0
    assert not (run / "parent").exists()  # the model is the parent: nothing trained from scratch
    records = [json.loads(p.read_text()) for p in (run / "candidates").glob("trial-*.json")]
    assert len(records) == 4 and all(r["status"] == "ok" and r["bn_batches"] == 2 for r in records)
    budget = int(0.7 * sum(p.numel() for p in trained_resnet().parameters()))
    assert all(r["params"] <= budget for r in records if r["tokens"] != records[0]["tokens"])
    final = tmp_path / "final"
    assert main(["train", "--run-dir", str(run), "--retain-epoch", "1", "--out", str(final), "--no-onnx",
                 "--progress", "none"]) == 0
    info = json.loads((final / "model.json").read_text())
    assert info["recipe"]["evaluation"] == "inherit" and info["space"]["model"] == "_cnn_models:trained_resnet"
    net = load_model(final)
    assert sum(p.numel() for p in net.parameters()) == info["params"] <= budget
