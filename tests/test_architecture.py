"""The package's layering, read from the source: no upward imports, no cycles, small modules.

Layers, lowest first: the shared top-level modules (tasks, imaging, colour, device, distributed, data_root);
tcmoa.model and tcmoa.metrics; tcmoa.fuse and tcmoa.train; the entry points (cli, __init__,
__main__). A module imports only from lower layers or from its own group, so `fuse` and `train`
never import each other and `metrics` never needs torch's model code. Imports under
`if TYPE_CHECKING:` are for type checkers only and are not counted.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tcmoa"
SHARED = {"tasks", "imaging", "ycbcr", "bit_depth", "colour", "device", "distributed", "data_root"}
LAYER = {"shared": 0, "model": 1, "metrics": 1, "align": 1, "fuse": 2, "train": 2, "entry": 3}
MAX_LINES = 430  # "about 400": imaging (427) and train/data (419) are next to split


def module_name(path: Path) -> str:
    """tcmoa/fuse/pipeline.py -> 'fuse.pipeline'; tcmoa/fuse/__init__.py -> 'fuse'."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def group(module: str) -> str:
    """The layer group a module belongs to."""
    head = module.split(".")[0]
    if head in LAYER:
        return head
    return "shared" if head in SHARED else "entry"


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(module: str) -> set[str]:
    """The tcmoa modules `module` imports anywhere (functions included), TYPE_CHECKING blocks excluded."""
    tree = ast.parse(MODULES[module].read_text())
    is_package = MODULES[module].name == "__init__.py"
    package = module.split(".") if is_package and module != "__init__" else module.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = [*base, *(node.module or "").split(".")] if node.module else base
            elif node.module and node.module.split(".")[0] == "tcmoa":
                target = node.module.split(".")[1:]
            else:
                target = None
            if target is not None:
                for alias in node.names:  # `from . import x` imports the module x
                    name = ".".join([*target, alias.name])
                    found.add(name if name in MODULES else ".".join(target))
        elif isinstance(node, ast.Import):
            found.update(".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("tcmoa."))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_no_upward_or_sideways_imports():
    bad = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in sorted(targets)
           if group(t) != group(m) and LAYER[group(t)] >= LAYER[group(m)]]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_fuse_and_train_are_independent():
    # The layering test implies it; said here in the words of the architecture.
    assert not [(m, t) for m, ts in GRAPH.items() for t in ts if {group(m), group(t)} == {"fuse", "train"}]


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(t):], t]))
            if t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in MODULES:
        if m not in state:
            walk(m)


def test_the_checker_sees_imports():
    # Guards the test itself: known edges are found, TYPE_CHECKING ones are not.
    assert "model.network" in GRAPH["fuse.pipeline"] and "tasks" in GRAPH["model.config"]
    assert "metrics.matlab" in GRAPH["metrics.vifb"]  # `from . import matlab as mf`
    assert "model.network" not in GRAPH["cli"] or "fuse.pipeline" in GRAPH["cli"]
    assert "fuse.figures" in GRAPH["cli"]  # a lazy import inside a function


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines; split it by concept"


def test_the_library_points_into_the_repository_never_to_shared():
    # A clone holds only the repository: docstrings and comments cite files in it (docs/, tests/).
    bad = [f"{MODULES[m]}:{i}" for m in MODULES for i, line in enumerate(MODULES[m].read_text().splitlines(), 1)
           if "shared/reference" in line or "shared/fixtures" in line]
    assert not bad, bad
