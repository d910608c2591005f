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
