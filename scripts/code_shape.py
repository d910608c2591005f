"""The shape of the code: the largest files, classes and functions, and the import circles inside a package.

    .venv/bin/python scripts/code_shape.py                 # src/sanas, the five largest of each
    .venv/bin/python scripts/code_shape.py --top 10 src/sanas

An import circle is a cycle in the graph "module A imports module B" over the package's own modules, counting
imports inside functions too (a lazy import hides a circle from Python, not from the reader). ``from pkg import
name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg`` itself; a package's
``__init__`` re-exporting its modules is not a circle by itself, so ``__init__`` modules are left out of the graph.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """``src/sanas/training/final.py`` under ``src`` → ``sanas.training.final``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def spans(tree: ast.Module) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, qualified name) of every class and every function (methods and nested functions included)."""
    classes: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                size = (child.end_lineno or child.lineno) - child.lineno + 1
                (classes if isinstance(child, ast.ClassDef) else functions).append((size, name))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return classes, functions


def imports(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules that module ``name`` imports anywhere in its body."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def largest(spans: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Largest first; ties by name."""
    return sorted(spans, key=lambda x: (-x[0], x[1]))


def shape(package_dir: Path) -> dict:
    """Files, classes, functions (each ``[(lines, name)]``, largest first) and import circles of a package."""
    root = package_dir.parent
    files = sorted(package_dir.rglob("*.py"))
    trees = {module_name(f, root): (f, ast.parse(f.read_text(), str(f))) for f in files}
    modules = set(trees)
    graph: dict[str, set[str]] = {}
    sizes, classes, functions = [], [], []
    for name, (path, tree) in trees.items():
        sizes.append((len(path.read_text().splitlines()), str(path)))
        c, f = spans(tree)
        classes += [(n, f"{name}.{q}") for n, q in c]
        functions += [(n, f"{name}.{q}") for n, q in f]
        if path.name != "__init__.py":
            graph[name] = imports(tree, name, False, modules)
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    return {"files": largest(sizes), "classes": largest(classes), "functions": largest(functions),
            "cycles": cycles(graph)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("package", nargs="?", default="src/sanas", type=Path)
    p.add_argument("--top", type=int, default=5)
    args = p.parse_args(argv)
    if not (args.package / "__init__.py").is_file():
        p.error(f"package {str(args.package)!r} has no __init__.py; expected a package folder such as src/sanas")
    s = shape(args.package)
    for title in ("files", "classes", "functions"):
        print(f"largest {title}:")
        for n, name in s[title][: args.top]:
            print(f"  {n:5d}  {name}")
    print(f"import circles: {len(s['cycles'])}")
    for c in s["cycles"]:
        print("  " + " <-> ".join(c))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
