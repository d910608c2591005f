"""Model summary: per-part rows add up to the analytic totals, ratios to the init model."""

from __future__ import annotations

from rich.console import Console

from sanas import get_space
from sanas.report import model_summary, render_summary

DARTS_SA_TOKENS = [5, 5, 0, 5, 5, 10, 7, 7, 5, 7, 7, 11, 10, 12, 10, 0, 5, 3, 10, 8]


def test_rows_add_up_and_ratio():
    space = get_space("DartsSpace")
    summary = model_summary(space, DARTS_SA_TOKENS)
    assert len(summary.rows) == 22  # stem, 20 cells, classifier
    assert sum(r.params for r in summary.rows) == summary.params == 3_344_396
    assert sum(r.macs for r in summary.rows) == summary.macs == space.count_macs(DARTS_SA_TOKENS)
    assert summary.init_params == 3_767_302
    assert round((1 - summary.params_ratio) * 100, 1) == 11.2
    assert [r.kind for r in summary.rows[1:-1]].count("reduction") == 2
    assert [r.width for r in summary.rows[1:-1]] == space.widths(DARTS_SA_TOKENS)


def test_render_mentions_totals():
    space = get_space("DartsSpace")
    console = Console(record=True, width=120)
    console.print(render_summary(model_summary(space, DARTS_SA_TOKENS), title="x"))
    text = console.export_text()
    assert "3,344,396" in text and "-11.2 %" in text and "reduction" in text


def test_the_headline_of_an_inherit_search_whose_parent_is_over_its_budget() -> None:
    """A compression search's init tokens are the parent's widths, over the budget: the headline says so and still
    explains what the inherited rewards are and how to fine-tune the best (it used to name a flag that does not
    exist, and only when the init had been evaluated)."""
    from sanas.report.search import Candidate, SearchReport, headline

    best = Candidate(trial=3, tokens=[1, 2], state="complete", reward=0.8, params=900, macs=1, seconds=1.0)
    report = SearchReport(config={"recipe": {"evaluation": "inherit", "retain_epoch": 0.25}}, budget=900,
                          init_tokens=[2, 2], init_params=1000, candidates=[best], search_steps=1)
    text = " ".join(headline(report))
    assert "The init tokens (1,000 params) are over the budget" in text
    assert "fine-tuned for 0.25 epoch(s)" in text and "sanas train --run-dir RUN --retain-epoch N" in text
    assert "--inherit" not in text


def test_the_headline_of_an_inherit_search_with_the_default_epochs() -> None:
    """A run config that leaves retain_epoch to the recipe's default said 'fine-tuned for ? epoch(s)'."""
    from sanas.report.search import Candidate, SearchReport, headline

    best = Candidate(trial=3, tokens=[1, 2], state="complete", reward=0.8, params=900, macs=1, seconds=1.0)
    report = SearchReport(config={"recipe": {"evaluation": "inherit"}}, budget=900, init_tokens=[2, 2],
                          init_params=1000, candidates=[best], search_steps=1)
    text = " ".join(headline(report))
    assert "scored right after BatchNorm re-estimation (no fine-tuning)" in text and "?" not in text
