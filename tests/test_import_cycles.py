"""No import cycles between empathkit modules: dependencies point one way.

Static, from the source with ``ast``: every ``import`` / ``from … import`` at any depth (a lazy import inside a
function still ties two modules together), relative imports resolved. ``from pkg import name`` counts as an import
of the submodule ``pkg.name`` when that module exists, else of ``pkg``. A module importing its own package's
``__init__`` (the package face) is not an edge, as in ``../shared/tools/import_cycles.py``. A cycle is a strongly
connected component of more than one module.
"""

from __future__ import annotations

import ast
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parents[1] / "empathkit"  # read, never imported

def module_files(package_dir: Path) -> dict[str, Path]:
    out = {}
    for f in sorted(package_dir.rglob("*.py")):
        rel = f.relative_to(package_dir.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: from the package of this module, one level up per extra dot
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = module_files(package_dir)
    root = package_dir.name
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, f in modules.items():
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for t in _targets(m, f.name == "__init__.py", node, modules):
                while t not in modules and "." in t:  # a name inside a module → that module
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != m and t.split(".")[0] == root and not m.startswith(t + "."):
                    graph[m].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def _report(found: list[list[str]]) -> str:
    return "\n".join(f"cycle ({len(c)} modules): " + " <-> ".join(c) for c in found)


def test_no_import_cycles():
    found = cycles(import_graph(PACKAGE_DIR))
    assert not found, "import cycles:\n" + _report(found)


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from toy.a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    return b\n")  # lazy + relative
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\nfrom toy import c\n")  # c: a submodule imported by name
    (pkg / "c.py").write_text("import toy\nfrom . import d\n")  # toy: the package face of c, not an edge
    (pkg / "d.py").write_text("import os\n")
    graph = import_graph(pkg)
    assert graph["toy.a"] == {"toy.sub.b"} and graph["toy.sub.b"] == {"toy.a", "toy.c"}
    assert graph["toy.c"] == {"toy.d"} and graph["toy"] == {"toy.a"}
    assert cycles(graph) == [["toy.a", "toy.sub.b"]]
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


def test_the_classifier_modules_point_one_way():
    graph = import_graph(PACKAGE_DIR)
    assert "empathkit.classifiers.ensemble" not in graph["empathkit.classifiers.core"]
    assert "empathkit.classifiers.core" in graph["empathkit.classifiers.ensemble"]
    assert "empathkit.classifiers.train" not in graph["empathkit.classifiers.finetune"]
    assert not [c for c in cycles(graph) if any(m.startswith("empathkit.classifiers") for m in c)]
