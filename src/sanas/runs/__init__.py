"""Run directories: a search's configuration, the worker loop, and local multi-worker launching."""

from sanas.runs.config import RunConfig, parse_budget
from sanas.runs.study import open_search
from sanas.runs.worker import Interrupted, WorkerSummary, run_worker

__all__ = ["Interrupted", "RunConfig", "WorkerSummary", "open_search", "parse_budget", "run_worker"]
