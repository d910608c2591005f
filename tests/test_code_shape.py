"""The package's imports flow one way: no module imports, even lazily, a module that imports it back."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def _code_shape() -> ModuleType:
    spec = importlib.util.spec_from_file_location("code_shape", REPO / "scripts" / "code_shape.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["code_shape"] = module
    spec.loader.exec_module(module)
    return module


def test_sanas_has_no_import_circles() -> None:
    assert _code_shape().shape(REPO / "src" / "sanas")["cycles"] == []


def test_a_lazy_import_back_is_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "sub" / "__init__.py"):
        init.write_text("from pkg.sub import low  # a package re-exporting is no circle\n")
    (pkg / "sub" / "low.py").write_text("def f():\n    from pkg.high import g  # hidden from Python, not from us\n")
    (pkg / "high.py").write_text("from pkg.sub.low import f\n\ndef g():\n    return f\n")
    (pkg / "alone.py").write_text("from . import high\nfrom .sub import low\n")
    shape = _code_shape().shape(pkg)
    assert shape["cycles"] == [["pkg.high", "pkg.sub.low"]]
    assert (4, "pkg.high.g") not in shape["functions"] and (2, "pkg.high.g") in shape["functions"]
