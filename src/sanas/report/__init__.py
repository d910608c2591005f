"""Reports for people: what an architecture costs and what a search found; nothing here trains or searches.

* :mod:`sanas.report.summary` (exported here): a DartsSpace architecture cell by cell — type, width, parameters
  and MACs (``sanas info``, ``sanas export``).
* :mod:`sanas.report.search`: what a study found — a table, ``report.md``, ``candidates.csv``, the reward and
  Pareto plots, and the few status lines of a running search (``sanas report``, ``sanas status``, the end of
  ``sanas search``). Import it from there: it reads the study through Optuna and the run configuration, so
  ``import sanas.report`` stays light.
"""

from sanas.report.summary import CellRow, ModelSummary, model_summary, render_summary

__all__ = ["CellRow", "ModelSummary", "model_summary", "render_summary"]
