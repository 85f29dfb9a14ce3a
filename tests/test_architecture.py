"""The code's shape, read from the source: layering, no import cycles anywhere, small modules and functions.

Layers of the library, lowest first: the shared top-level modules (tasks, imaging, colour, device,
distributed, data_root, ...); tcmoa.model, tcmoa.metrics and tcmoa.align; tcmoa.fuse and tcmoa.train;
the entry points (cli, __init__, __main__). A module imports only from lower layers or from its own
group, so `fuse` and `train` never import each other and `metrics` never needs torch's model code.
For the layering, imports under `if TYPE_CHECKING:` are for type checkers only and are not counted;
for cycles they are (test_no_import_cycles_anywhere says why). docs/CONVENTIONS.md ("Code shape")
gives the size limits' reasons.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tcmoa"
SHARED = {"tasks", "imaging", "pixel_values", "ycbcr", "bit_depth", "colour", "device", "distributed", "data_root"}
# align: registration of the sources before fusion, used by fuse (hence below it).
LAYER = {"shared": 0, "model": 1, "metrics": 1, "align": 1, "fuse": 2, "train": 2, "entry": 3}
# A module is one concept read in one sitting; each time a module here grew past ~400 lines it held
# two (imaging: reading and the pixel-value rules; train/data: the pack, the banks and the batches).
MAX_LINES = 400
# A function fits on one screen; the longer ones here did several steps a reader had to hold at once
# (demo/events.py::wire_events wired every event, train/loop.py::run_stage opened, looped and saved).
MAX_FUNCTION_LINES = 60
# Everything that is code of the project rather than tests or benchmarks: the library, the app.
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "demo").rglob("*.py")) + [ROOT / "app.py"]


def qualified_name(path: Path) -> str:
    """tcmoa/fuse/pipeline.py -> 'tcmoa.fuse.pipeline'; tcmoa/fuse/__init__.py -> 'tcmoa.fuse'; app.py -> 'app'."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {qualified_name(p): p for p in SOURCES}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _import_targets(node: ast.ImportFrom | ast.Import, package: list[str]) -> set[str]:
    """The project modules one import statement names (`from . import x` names the module x)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in FILES}
    if node.level:
        base = package[:len(package) - (node.level - 1)]
        target = [*base, *node.module.split(".")] if node.module else base
    elif node.module:
        target = node.module.split(".")
    else:
        return set()
    found = set()
    for alias in node.names:
        name = ".".join([*target, alias.name])
        found.add(name if name in FILES else ".".join(target))
    return {m for m in found if m in FILES}


def imports_in(module: str, *, type_checking: bool) -> set[str]:
    """The project modules `module` imports anywhere (functions included); `if TYPE_CHECKING:` blocks only when asked."""
    path = FILES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not type_checking:
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(_import_targets(node, package))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found - {module}


def module_name(path: Path) -> str:
    """The library's short names: tcmoa/fuse/pipeline.py -> 'fuse.pipeline'; tcmoa/__init__.py -> '__init__'."""
    return qualified_name(path).removeprefix("tcmoa").removeprefix(".") or "__init__"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def short(module: str) -> str:
    """'tcmoa.fuse' -> 'fuse'; 'tcmoa' -> '__init__'."""
    return module.removeprefix("tcmoa").removeprefix(".") or "__init__"


# The library's runtime imports by short name, for the layering.
GRAPH = {short(q): {short(t) for t in imports_in(q, type_checking=False) if t == "tcmoa" or t.startswith("tcmoa.")}
         for q in FILES if q == "tcmoa" or q.startswith("tcmoa.")}


def group(module: str) -> str:
    """The layer group a library module belongs to."""
    head = module.split(".")[0]
    if head in LAYER:
        return head
    return "shared" if head in SHARED else "entry"


def test_no_upward_or_sideways_imports():
    bad = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in sorted(targets)
           if group(t) != group(m) and LAYER[group(t)] >= LAYER[group(m)]]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_fuse_and_train_are_independent():
    # The layering test implies it; said here in the words of the architecture.
    assert not [(m, t) for m, ts in GRAPH.items() for t in ts if {group(m), group(t)} == {"fuse", "train"}]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as [m, ..., m], or None."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return [*stack[stack.index(t):], t]
            if t not in state and (cycle := walk(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := walk(m)):
            return cycle
    return None


def test_no_import_cycles_anywhere() -> None:
    # tcmoa/, demo/ and app.py, TYPE_CHECKING imports included: a cycle only type checkers follow still
    # ties two modules together (neither can be read or changed without the other), and it breaks at
    # run time as soon as one annotation is evaluated. Types both sides need belong in a third module.
    cycle = find_cycle({m: imports_in(m, type_checking=True) for m in FILES})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_checker_sees_imports():
    # Guards the test itself: known edges are found, TYPE_CHECKING ones only when asked.
    assert "model.network" in GRAPH["fuse.pipeline"] and "tasks" in GRAPH["model.config"]
    assert "metrics.matlab" in GRAPH["metrics.vifb"]  # `from . import matlab as mf`
    assert "model.network" not in GRAPH["cli"] or "fuse.pipeline" in GRAPH["cli"]
    assert "fuse.figures" in GRAPH["cli"]  # a lazy import inside a function
    assert "model.checkpoint" not in GRAPH["__init__"]  # under TYPE_CHECKING only (loaded lazily at run time)
    assert "tcmoa.model.checkpoint" in imports_in("tcmoa", type_checking=True)
    assert "demo.engine" in imports_in("demo.sources", type_checking=False)  # `from .engine import ...`
    assert "tcmoa.imaging" in imports_in("demo.sources", type_checking=False)  # `from tcmoa.imaging import ...`
    assert "demo" in imports_in("app", type_checking=False)  # `from demo import ...`


@pytest.mark.parametrize("module", sorted(FILES))
def test_modules_stay_small(module):
    lines = len(FILES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{FILES[module]} has {lines} lines; split it by concept"


def long_functions(path: Path) -> list[str]:
    """'name (N lines)' for every function or method in the file longer than MAX_FUNCTION_LINES."""
    lengths = {node: (node.end_lineno or node.lineno) - node.lineno + 1 for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return [f"{node.name} ({n} lines)" for node, n in lengths.items() if n > MAX_FUNCTION_LINES]


@pytest.mark.parametrize("module", sorted(FILES))
def test_functions_stay_small(module):
    # From `def` to the last line, docstring and nested functions included.
    too_long = long_functions(FILES[module])
    assert not too_long, f"{FILES[module]}: {', '.join(too_long)}; split by step (over {MAX_FUNCTION_LINES} lines)"


def test_the_size_checks_measure_what_they_say(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    (tmp_path / "ok.py").write_text(f"def fits():\n{body}\n")  # exactly MAX_FUNCTION_LINES lines
    (tmp_path / "long.py").write_text(f"def outer():\n    def inner():\n        pass\n{body}\n")
    assert long_functions(tmp_path / "ok.py") == []
    assert long_functions(tmp_path / "long.py") == [f"outer ({MAX_FUNCTION_LINES + 2} lines)"]


def test_the_library_points_into_the_repository_never_to_shared():
    # A clone holds only the repository: docstrings and comments cite files in it (docs/, tests/).
    bad = [f"{MODULES[m]}:{i}" for m in MODULES for i, line in enumerate(MODULES[m].read_text().splitlines(), 1)
           if "shared/reference" in line or "shared/fixtures" in line]
    assert not bad, bad
