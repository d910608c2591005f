"""The examples in the docstrings of spaces, network, training, reports, run configs and the CLI run as shown."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["sanas", "sanas.spaces.base", "sanas.spaces.darts", "sanas.spaces.channels", "sanas.spaces.model",
           "sanas.spaces.mobilenet", "sanas.spaces.resnet", "sanas.network.genotypes", "sanas.network.model",
           "sanas.atomic", "sanas.report.summary", "sanas.search.api", "sanas.search.budget",
           "sanas.search.chain", "sanas.search.samplers", "sanas.cli", "sanas.training", "sanas.training.augment",
           "sanas.training.data", "sanas.training.trainer", "sanas.training.final", "sanas.runs.isolate"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples in {name} failed"
