"""The held-out scores of benchmarks/score_fidelity.py, against hand computations on tiny logits."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import score_fidelity  # noqa: E402

# Three images, three classes. The child's argmax: 0, 2, 0 (a tie between 0 and 1 goes to 0); the parent's: 1, 2, 1.
CHILD = [[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 1.0, 0.0]]
PARENT = [[1.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]]
LABELS = [0, 2, 1]


def softmax(row: list[float]) -> list[float]:
    total = sum(math.exp(v) for v in row)
    return [math.exp(v) / total for v in row]


def scores(child: list[list[float]], parent: list[list[float]], labels: list[int]) -> dict[str, float]:
    f64 = torch.float64
    return score_fidelity.held_out_scores(torch.tensor(child, dtype=f64), torch.tensor(parent, dtype=f64),
                                          torch.tensor(labels))


def test_top1_and_agreement_count_argmax_matches() -> None:
    s = scores(CHILD, PARENT, LABELS)
    assert s["top1"] == pytest.approx(2 / 3)  # images 0 and 1 right; image 2: predicted 0 (tie), label 1
    assert s["agreement"] == pytest.approx(1 / 3)  # only image 1: both say 2


def test_agreement_is_one_for_the_parent_itself_whatever_the_labels() -> None:
    s = scores(PARENT, PARENT, [0, 0, 0])
    assert s["agreement"] == 1.0 and s["neg_kl"] == pytest.approx(0.0, abs=1e-12)
    assert s["top1"] == pytest.approx(0.0)


def test_cross_entropy_is_the_mean_negative_log_probability_of_the_label() -> None:
    want = sum(-math.log(softmax(row)[y]) for row, y in zip(CHILD, LABELS, strict=True)) / 3
    assert scores(CHILD, PARENT, LABELS)["neg_ce"] == pytest.approx(-want, rel=1e-12)
    # By hand for the first image: -log(e^2 / (e^2 + e + 1)) = 0.4076...
    assert -math.log(math.exp(2) / (math.exp(2) + math.e + 1)) == pytest.approx(0.40760596, rel=1e-7)


def test_kl_goes_from_the_parent_to_the_child() -> None:
    # Parent (1/2, 1/2), child (3/4, 1/4): KL(parent ‖ child) = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3) = 0.1438;
    # the other direction would be ¾ ln(3/2) + ¼ ln(1/2) = 0.1308.
    s = scores([[math.log(3.0), 0.0]], [[0.0, 0.0]], [0])
    assert s["neg_kl"] == pytest.approx(-0.5 * math.log(4 / 3), rel=1e-12)
    assert s["neg_kl"] != pytest.approx(-(0.75 * math.log(1.5) + 0.25 * math.log(0.5)), rel=1e-3)


def test_kl_is_the_mean_over_images() -> None:
    want = sum(sum(pi * math.log(pi / qi) for pi, qi in zip(softmax(p), softmax(q), strict=True))
               for p, q in zip(PARENT, CHILD, strict=True)) / 3
    assert scores(CHILD, PARENT, LABELS)["neg_kl"] == pytest.approx(-want, rel=1e-12)


def test_scores_ignore_a_constant_added_to_a_row_of_logits() -> None:
    shifted = [[v + 7.0 for v in row] for row in CHILD]
    assert scores(shifted, PARENT, LABELS) == pytest.approx(scores(CHILD, PARENT, LABELS), rel=1e-9)


def test_cost_counts_forward_passes_as_a_third_of_a_step() -> None:
    # 0.25 epoch + 20 BN batches of 79 steps an epoch + 6,000 held-out images of 5,000 training images.
    assert score_fidelity.cost_epochs(0.25, 20, 6000, 79, 5000) == pytest.approx(0.25 + 20 / 237 + 0.4)
    assert score_fidelity.cost_epochs(0, 0, 0, 79, 5000) == 0


def test_splits_are_seeded_and_the_table_images_and_the_rest_partition_the_split() -> None:
    table = torch.tensor([3, 10, 500, 5999])
    a, b = score_fidelity.make_splits(6000, table), score_fidelity.make_splits(6000, table)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(a["random-1000-d0"]) == 1000 and len(set(a["random-5000-d4"].tolist())) == 5000
    assert not torch.equal(a["random-1000-d0"], a["random-1000-d1"])
    both = torch.cat([a["table-4"], a["disjoint-5996"]]).sort().values
    assert torch.equal(both, torch.arange(6000))


@pytest.mark.skipif(not score_fidelity.OUT_JSON.exists(), reason="no committed score_fidelity.json")
def test_the_committed_table_follows_from_the_committed_scores() -> None:
    committed = json.loads(score_fidelity.OUT_JSON.read_text())
    again = score_fidelity.summarise(write=False, reps=2)["results"]
    assert len(again) == len(committed["results"])
    for old, new in zip(committed["results"], again, strict=True):
        for key, value in old.items():
            if (key.startswith("tau_") and not key.endswith("_sd")) or key in ("cost_epochs", "images", "score"):
                assert new[key] == value, (old["budget"], old["split"], old["score"], key)
