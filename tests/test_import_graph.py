"""The import graph you can draw (docs/architecture.md): no circles, no imports of project
modules hidden inside functions, and the layers' directions kept."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "node", "inspection")
#: Entry points that import the whole node lazily, so that `tongban --help` stays fast.
LAZY_ALLOWED = {"node.cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations/versions" not in path.as_posix()
    }


MODULES = _modules()


def _target(name: str) -> str | None:
    """The project module an import names (a submodule if it is one), or None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(statement: ast.stmt, module: str) -> list[str]:
    names: list[str] = []
    if isinstance(statement, ast.Import):
        names = [alias.name for alias in statement.names]
    elif isinstance(statement, ast.ImportFrom):
        base = statement.module or ""
        if statement.level:
            package = module.split(".")
            base = ".".join(package[: len(package) - statement.level] + ([base] if base else []))
        # A submodule when the name is one, else the module the name is taken from.
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in statement.names
        ]
    out = []
    for name in names:
        target = _target(name)
        if target is not None and target != module:
            out.append(target)
    return out


def _scan(module: str, path: Path) -> tuple[set[str], set[str], set[str]]:
    """(runtime module-level imports, TYPE_CHECKING imports, imports inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    typing_only: set[str] = set()
    nested: set[str] = set()

    def walk(statements: list[ast.stmt], *, in_function: bool, typing: bool) -> None:
        for statement in statements:
            if isinstance(statement, ast.Import | ast.ImportFrom):
                found = _imports(statement, module)
                (nested if in_function else typing_only if typing else top).update(found)
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                walk(statement.body, in_function=True, typing=typing)
            elif isinstance(statement, ast.ClassDef):
                walk(statement.body, in_function=in_function, typing=typing)
            elif isinstance(statement, ast.If):
                walk(
                    statement.body,
                    in_function=in_function,
                    typing=typing or _is_type_checking(statement),
                )
                walk(statement.orelse, in_function=in_function, typing=typing)
            elif isinstance(statement, ast.Try | ast.With | ast.AsyncWith | ast.For | ast.While):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for inner in getattr(statement, block, []):
                        body = inner.body if isinstance(inner, ast.ExceptHandler) else [inner]
                        walk(body, in_function=in_function, typing=typing)

    walk(tree.body, in_function=False, typing=False)
    return top, typing_only, nested


SCANS = {module: _scan(module, path) for module, path in MODULES.items()}


def _third_party(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    roots = set()
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in statement.names}
        elif isinstance(statement, ast.ImportFrom) and not statement.level and statement.module:
            roots.add(statement.module.split(".")[0])
    return roots


def test_no_circles() -> None:
    graph = {module: scan[0] for module, scan in SCANS.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert circles == []


def test_no_imports_of_the_project_inside_functions() -> None:
    hidden = {
        module: sorted(scan[2])
        for module, scan in SCANS.items()
        if scan[2] and module not in LAZY_ALLOWED
    }
    assert hidden == {}


def test_the_command_line_imports_the_demo_only_when_it_runs() -> None:
    # `tongban demo` imports the demo package (and so the whole node) inside its handler.
    assert {t for t in SCANS["node.cli"][0] if t.startswith("node.demo")} == set()


def _imported_by(prefix: str) -> dict[str, set[str]]:
    return {
        module: scan[0] | scan[1] | scan[2]
        for module, scan in SCANS.items()
        if module == prefix or module.startswith(prefix + ".")
    }


def test_protocol_imports_nothing_of_the_project() -> None:
    for module, targets in _imported_by("protocol").items():
        assert {t for t in targets if not t.startswith("protocol")} == set(), module


def test_the_case_domain_knows_no_http_pages_or_video() -> None:
    for module, targets in _imported_by("node.cases").items():
        bad = {
            t
            for t in targets
            if t.startswith(("node.pages", "node.api", "inspection", "node.http_errors"))
            or t.endswith(".views")
        }
        assert bad == set(), module
        assert "aiohttp" not in _third_party(module), module


def test_accounts_know_no_pages() -> None:
    for module, targets in _imported_by("node.accounts").items():
        assert {t for t in targets if t.startswith("node.pages")} == set(), module


def test_the_video_inspection_uses_the_case_domain_through_its_port_only() -> None:
    allowed = {"node.cases.ports", "node.cases.actor", "node.cases.models"}
    for module, targets in _imported_by("inspection").items():
        cases = {t for t in targets if t.startswith("node.cases")}
        assert cases <= allowed, module


def test_every_application_key_is_in_one_module() -> None:
    elsewhere = [
        module
        for module, path in MODULES.items()
        if module != "node.appkeys" and "web.AppKey(" in path.read_text(encoding="utf-8")
    ]
    assert elsewhere == []
