"""`sanas info`: the summary table, and one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sanas.cli import main, parse_tokens
from sanas.spaces import PlainCNNSpace, get_space, register_space
from sanas.spaces.base import Part

SA = "5 5 0 5 5 10 7 7 5 7 7 11 10 12 10 0 5 3 10 8".split()


def test_info_prints_both_models(capsys):
    assert main(["info", "--token", *SA]) == 0
    out = capsys.readouterr().out
    assert "3,767,302" in out and "3,344,396" in out and "-11.2 %" in out


def test_info_small_space(capsys):
    assert main(["info", "--layers", "5", "--filter-num", "4,8,12,16,24,32,48,64", "--init-channels", "8",
                 "--in-channels", "1", "--genotype", "DARTS_V2"]) == 0
    assert "cell 4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "--token", "5", "x"], "token 1 is 'x', expected an integer"),
        (["info", "--token", "5", "5"], "expected 20 tokens for DartsSpace, got 2"),
        (["info", "--token", *SA[:-1], "14"], "position 19 is 14, expected an integer in [0, 13]"),
        (["info", "--space", "Nope"], "unknown search space 'Nope'; known spaces: "),
        (["info", "--init-channels", "10"], "init width 10 of cell 0"),
    ],
)
def test_info_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_entry_point_exit_status():
    proc = subprocess.run([sys.executable, "-m", "sanas.cli", "info", "--token", "1", "2"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2 and "expected 20 tokens" in proc.stderr


def test_parse_tokens_forms():
    assert parse_tokens(["[5, 5,0]", "3"]) == [5, 5, 0, 3]
    with pytest.raises(Exception, match="no tokens given"):
        parse_tokens([" "])


@register_space
class _PartsCNN(PlainCNNSpace):
    """A space that is not DARTS but reports its parts: ``sanas info`` asks what a space can report, not its kind."""

    def parts(self, tokens, input_size=(32, 32)):
        return [Part("body", "plain", None, self.count_params(tokens), self.count_macs(tokens, input_size)),
                Part("probe", "training only", None, 7, 0, counted=False)]


def test_info_tabulates_any_space_that_reports_its_parts(capsys):
    assert main(["info", "--space", "_PartsCNN", "--filter-num", "4,8,16", "--layers", "3"]) == 0
    out = capsys.readouterr().out
    space = get_space("_PartsCNN", filter_num=[4, 8, 16], layers=3)
    params = f"{space.count_params(space.init_tokens()):,}"
    assert "body" in out and params in out and "training only, not counted): 7 params" in out


def test_info_on_a_space_without_parts_is_one_line(capsys):
    assert main(["info", "--space", "PlainCNNSpace", "--filter-num", "4,8,16", "--layers", "3"]) == 2
    err = capsys.readouterr().err
    assert "report their parts" in err and "PlainCNNSpace" in err and err.count("\n") == 1
