"""Structure checks anyone can run: no import cycle in ``harness`` (module-level or inside a
function; ``if TYPE_CHECKING:`` imports aside), no module over ~500 lines, no engine function over
~120 lines, and a short ``cli.py``."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
MAX_MODULE, MAX_CLI, MAX_ENGINE_FUNCTION = 520, 420, 125


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The harness modules ``tree`` imports; ``from pkg import sub`` counts as the submodule."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif base in known:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(ast.parse(p.read_text()), m, p.name == "__init__.py", known) for m, p in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_harness():
    graph = _graph()
    assert "harness.engine.loop" in graph["harness.engine"]  # the walker sees package imports
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_modules_and_functions_stay_short():
    long_modules = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_MODULE}
    assert not long_modules, f"modules over {MAX_MODULE} lines: {long_modules}"
    cli = len((PACKAGE / "cli.py").read_text().splitlines())
    assert cli <= MAX_CLI, f"cli.py has {cli} lines"
    long_functions = {}
    for path in (PACKAGE / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_ENGINE_FUNCTION:
                    long_functions[f"{path.name}:{node.name}"] = length
    assert not long_functions, f"engine functions over {MAX_ENGINE_FUNCTION} lines: {long_functions}"


def test_loading_a_suite_with_claims_imports_neither_the_report_nor_scipy():
    """Every ``harness run`` loads its suite; the report's stack (pandas, scipy, seaborn: seconds of
    imports) is for ``report`` and ``verify``, and a claims section must not pull it in at load time."""
    import subprocess
    import sys

    code = ("import sys; from harness.suite import load_suite; "
            "s = load_suite('suites/repro/initial-loss.yaml', []); assert s.claims; "
            "print(sorted(m for m in ('scipy', 'pandas', 'seaborn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_harness_module_imports():
    """The fast lane (``make test-fast``, ``-m "not slow"``) runs this file, so every module of the package is
    at least imported there: a module only slow tests reach cannot break unnoticed by an import error."""
    import importlib

    for module in sorted(_modules()):
        if module != "harness.__main__":  # runs the command line
            importlib.import_module(module)
