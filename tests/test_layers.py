"""The folders show the layers, and the imports keep to them (ARCHITECTURE.md).

Every import inside `harness` — at the top of a module or inside a function — is read from the
source. An import may run sideways (within its own tier) or down, never up, and no two modules
may import each other. Registries find their modules by name at run time (importlib), which is
how plug-ins are discovered and is not an import arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"

# Lowest first. A module's tier is that of the longest prefix that names it.
TIERS: list[tuple[str, ...]] = [
    ("harness", "harness.core"),  # the ground (harness/__init__ only holds the version)
    ("harness.results", "harness.measure"),
    # plug-ins: what a run is made of
    ("harness.images", "harness.metrics", "harness.suites", "harness.fixtures", "harness.reference",
     "harness.models", "harness.adapters"),
    ("harness.judge",),
    ("harness.run", "harness.serving"),
    ("harness.gate",),
    ("harness.report",),
    ("harness.commands",),
    ("harness.cli", "harness.__main__", "harness.tester"),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def tier(module: str) -> int:
    best, rank = "", -1
    for i, names in enumerate(TIERS):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    assert rank >= 0, f"{module} is in no tier: add its package to TIERS and to ARCHITECTURE.md"
    return rank


def imports(module: str) -> set[str]:
    """The harness modules `module` imports (a name imported from a package counts as the
    submodule when there is one)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            subs = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in MODULES]
            targets = subs if subs and len(subs) == len(node.names) else [source, *subs]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("harness") and target != module:
                found.add(target)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_has_a_tier_and_the_root_stays_small():
    for module in MODULES:
        tier(module)
    root = [p.name for p in PACKAGE.glob("*.py")]
    assert len(root) <= 10, f"harness/ root holds {len(root)} modules: {sorted(root)}; give new ones a wing"


def test_no_import_runs_up():
    upward = sorted(
        f"{module} (tier {tier(module)}) imports {target} (tier {tier(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if tier(target) > tier(module)
    )
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_no_two_modules_import_each_other():
    mutual = sorted(
        f"{a} <-> {b}" for a, targets in GRAPH.items() for b in targets if a < b and a in GRAPH.get(b, ())
    )
    assert not mutual, "modules that import each other:\n" + "\n".join(mutual)


def test_no_circle_through_several_modules():
    # Package __init__ modules that only re-export are skipped as edges into themselves from
    # their own submodules would be; everything else must form a DAG.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_walker_sees_an_upward_import(tmp_path):
    # The checker itself must be able to fail: a core module importing the run engine is caught.
    assert tier("harness.core.records") < tier("harness.run.tester")
    assert "harness.judge.accuracy" in GRAPH["harness.run.tester"]
