"""Layering: the accounts area sits below the pages, so nothing in node/accounts imports
node.pages (not even inside a function), and the inspection signalling reads the session
cookie through node.accounts.sessions at module level."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) of every import in ``path``, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, id(node) in top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found.extend((name, node.lineno, id(node) in top) for name in [node.module, *names])
    return found


def test_accounts_imports_nothing_from_the_pages() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for path in sorted((ROOT / "node" / "accounts").rglob("*.py"))
        for module, line, _top in imported_modules(path)
        if module == "node.pages" or module.startswith("node.pages.")
    ]
    assert offending == []


def test_importing_accounts_auth_does_not_load_the_pages() -> None:
    code = (
        "import sys, node.accounts.auth, node.accounts.sessions, node.accounts.views;"
        "print(sorted(m for m in sys.modules if m.startswith('node.pages')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_signalling_reads_the_cookie_through_accounts_sessions() -> None:
    imports = imported_modules(ROOT / "inspection" / "signalling.py")
    assert not [m for m, _line, _top in imports if m.startswith("node.pages")]
    assert any(m == "node.accounts.sessions" and top for m, _line, top in imports)
