"""The final fine-tune's curves (benchmarks/final_curve.py): points from before an axis existed read as what they
ran with, and each axis is compared with that value on the same child."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import final_curve as fc  # noqa: E402


def point(ratio: float | None, top1: float, **axes: float) -> dict:
    p = {"model": "resnet20", "epochs": 6, "distill": 0.5, "params": 100, "val_top1": top1, **axes}
    return p if ratio is None else {**p, "budget_ratio": ratio}


def test_an_older_point_is_the_value_it_ran_with_and_each_axis_is_read_against_it() -> None:
    old = point(None, 0.90)  # measured before the ratio, rate and cutout axes: 0.5×, lr 0.0125, cutout 16
    assert fc.key(old) == ("resnet20", 0.5, 6, 0.5, 0.0125, 16)
    assert fc.TODAY["cutout"] == 0 and fc.DEFAULTS["cutout"] == 16
    pts = [old, point(0.5, 0.91, cutout=0), point(0.7, 0.92), point(0.7, 0.93, cutout=0), point(0.7, 0.94, lr=0.005)]
    rows = fc.axis_section(pts, "cutout")
    assert rows[0] == "| ratio | params | E | distill | cutout 16 (before) | cutout 0 (default) |"
    assert rows[2:4] == ["| 0.7× | 100 | 6 | 0.5 | 92.00 | 93.00 (+1.00) |",
                         "| 0.5× | 100 | 6 | 0.5 | 90.00 | 91.00 (+1.00) |"]
    rates = fc.axis_section(pts, "lr")  # the cutout-free points are not rate points
    assert rates[2:] == ["| 0.7× | 100 | 6 | 0.5 | 92.00 | 94.00 (+2.00) |", ""]


@pytest.mark.parametrize(("argv", "message"), [(["--cutout", "-1"], "--cutout is '-1'"),
                                                (["--lr", "0"], "--lr is '0'"),
                                                (["--budget-ratio", "1.5"], "--budget-ratio is '1.5'"),
                                                (["--epochs", "1.5"], "--epochs is '1.5'")])
def test_a_bad_list_is_refused_before_any_data_is_loaded(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        fc.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_length_section_reads_each_longer_fine_tune_against_the_shortest_at_today_s_other_defaults() -> None:
    """Issue 19's item 5 with today's defaults: a ratio measured at two lengths (cutout 0, rate and distillation at
    their defaults) is a row; points at another cutout, rate or weight, or at one length only, are not."""
    def at(ratio: float, epochs: int, top1: float, **axes: float) -> dict:
        return {**point(ratio, top1, **{"cutout": 0, "lr": 0.0125, **axes}), "epochs": epochs}

    pts = [at(0.7, 6, 0.90), at(0.7, 12, 0.91), at(0.3, 6, 0.80), at(0.3, 12, 0.83),
           at(0.5, 6, 0.85),  # one length: no row
           at(0.5, 12, 0.99, cutout=16), at(0.5, 24, 0.99, lr=0.005), {**at(0.5, 12, 0.99), "distill": 0.0}]
    lines = fc.today_length_section(pts, {"epochs": 24})
    mark = {e: " (default)" if e == fc.final_epochs(24) else "" for e in (6, 12)}  # today's length
    assert lines[2] == f"| ratio | params | E = 6 (0.25 P){mark[6]} | E = 12 (0.5 P){mark[12]} |" and any(mark.values())
    assert lines[4:6] == ["| 0.7× | 100 | 90.00 | 91.00 (+1.00) |", "| 0.3× | 100 | 80.00 | 83.00 (+3.00) |"]
    assert "* E = 12 against the shortest: +2.00 points on average over 2 children, from +1.00 to +3.00." in lines
    assert fc.today_length_section(pts[4:], {"epochs": 24}) == []
