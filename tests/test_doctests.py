"""The examples in the docstrings of every module of the sanas package run as shown.

Every module is found by walking the package (a new module's examples run without being listed here); the
modules below must carry examples, so losing them (or a module) fails too.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import sanas

WITH_EXAMPLES = {
    "sanas", "sanas.atomic", "sanas.cli",
    "sanas.network.genotypes", "sanas.network.model", "sanas.network.operations",
    "sanas.report.search", "sanas.report.summary",
    "sanas.runs.config", "sanas.runs.console", "sanas.runs.isolate",
    "sanas.search.api", "sanas.search.budget", "sanas.search.chain", "sanas.search.early_stop", "sanas.search.lease",
    "sanas.search.samplers", "sanas.search.storage",
    "sanas.spaces.base", "sanas.spaces.channels.trace", "sanas.spaces.cnn", "sanas.spaces.darts",
    "sanas.spaces.inherit", "sanas.spaces.mobilenet", "sanas.spaces.model", "sanas.spaces.resnet",
    "sanas.training", "sanas.training.augment", "sanas.training.data", "sanas.training.final",
    "sanas.training.candidate", "sanas.training.recipe", "sanas.training.stream", "sanas.training.trainer",
}


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while walking the sanas package")


MODULES = ["sanas", *sorted(m.name for m in pkgutil.walk_packages(sanas.__path__, "sanas.", onerror=_raise))]


def test_every_module_is_walked() -> None:
    missing = WITH_EXAMPLES - set(MODULES)
    assert not missing, f"modules expected to carry examples were not found: {sorted(missing)}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    if name in WITH_EXAMPLES:
        assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples in {name} failed"
