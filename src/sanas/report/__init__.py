"""Reports: model summaries (and, later, search reports and plots)."""

from sanas.report.summary import CellRow, ModelSummary, model_summary, render_summary

__all__ = ["CellRow", "ModelSummary", "model_summary", "render_summary"]
