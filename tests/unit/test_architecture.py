"""The house rules (DESIGN §7, issue 14), checked on the source so that breaking one fails the suite.

- layers: http, runtime → service → store → domain; the domain imports only the standard library;
- `app.http` and `app.runtime` never import each other (they meet only in `app/__main__.py`, which
  nothing imports: what every server process does at start is `app/process.py`);
- SQL lives in the store: nothing outside `app/store/` imports SQLAlchemy or looks at the dialect;
- no class is a room of its own: at most MAX_CLASS_LINES lines and MAX_CLASS_METHODS methods.

Each rule is a function from a parsed module to its violations; the last tests feed those
functions a module that breaks the rule, so a rule that could never fire would fail too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"

MAX_CLASS_LINES = 300
MAX_CLASS_METHODS = 20


def _modules(under: Path = APP) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(under.rglob("*.py")):
        yield str(path.relative_to(APP.parent)), ast.parse(path.read_text())


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _in(path: str, *packages: str) -> bool:
    parts = Path(path).parts  # ("app", "store", "x.py") or ("app", "service.py")
    return len(parts) > 1 and (parts[1] in packages or parts[1].removesuffix(".py") in packages)


def sqlalchemy_uses(tree: ast.Module) -> list[str]:
    return sorted(n for n in _imports(tree) if n.split(".")[0] == "sqlalchemy")


def dialect_branches(tree: ast.Module) -> list[int]:
    """Lines that read a connection's or engine's `.dialect` (the store decides per database)."""
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "dialect"]


def oversized_classes(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        methods = sum(isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef) for b in node.body)
        if lines > MAX_CLASS_LINES or methods > MAX_CLASS_METHODS:
            found.append(f"{node.name}: {lines} lines, {methods} methods")
    return found


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    for path, tree in _modules(APP / "domain"):
        for name in _imports(tree):
            top = name.split(".")[0]
            assert name.startswith("app.domain") or top in sys.stdlib_module_names, f"{path} imports {name}"


def test_nothing_but_the_entry_point_imports_http() -> None:
    for path, tree in _modules():
        if _in(path, "http", "__main__"):
            continue
        assert not any(n.startswith("app.http") for n in _imports(tree)), path


def test_nothing_imports_the_entry_point() -> None:
    for path, tree in _modules():
        assert not any(n == "app.__main__" for n in _imports(tree)), path


def test_http_does_not_import_runtime() -> None:
    for path, tree in _modules(APP / "http"):
        assert not any(n.startswith("app.runtime") for n in _imports(tree)), path


def test_store_does_not_import_service_runtime_or_http() -> None:
    for path, tree in _modules(APP / "store"):
        assert not any(n.startswith(("app.service", "app.runtime", "app.http")) for n in _imports(tree)), path


def test_service_does_not_import_runtime_or_http() -> None:
    for path, tree in _modules():
        if _in(path, "service"):
            assert not any(n.startswith(("app.runtime", "app.http")) for n in _imports(tree)), path


def test_only_the_store_imports_sqlalchemy() -> None:
    leaks = {path: sqlalchemy_uses(tree) for path, tree in _modules() if not _in(path, "store")}
    assert {p: u for p, u in leaks.items() if u} == {}


def test_only_the_store_branches_on_the_dialect() -> None:
    leaks = {path: dialect_branches(tree) for path, tree in _modules() if not _in(path, "store")}
    assert {p: lines for p, lines in leaks.items() if lines} == {}


def test_no_class_is_a_room_of_its_own() -> None:
    big = {path: oversized_classes(tree) for path, tree in _modules()}
    assert {p: c for p, c in big.items() if c} == {}


# ------------------------------------------------------------------ the rules can fire

def test_the_sqlalchemy_rule_sees_both_import_forms() -> None:
    tree = ast.parse("import sqlalchemy.exc\nfrom sqlalchemy.ext.asyncio import AsyncConnection\nimport sqlite3\n")
    assert sqlalchemy_uses(tree) == ["sqlalchemy.exc", "sqlalchemy.ext.asyncio"]


def test_the_dialect_rule_sees_a_branch() -> None:
    tree = ast.parse('if conn.dialect.name == "postgresql":\n    pass\n')
    assert dialect_branches(tree) == [1]


def test_the_size_rule_sees_too_many_methods_and_too_many_lines() -> None:
    many = "class Wide:\n" + "".join(f"    def m{i}(self): pass\n" for i in range(MAX_CLASS_METHODS + 1))
    long = "class Long:\n    x = 1\n" + "    \n" * MAX_CLASS_LINES + "    y = 2\n"
    small = "class Small:\n    def a(self): pass\n"
    assert oversized_classes(ast.parse(many)) == [f"Wide: {MAX_CLASS_METHODS + 2} lines, {MAX_CLASS_METHODS + 1} methods"]
    assert oversized_classes(ast.parse(long)) == [f"Long: {MAX_CLASS_LINES + 3} lines, 0 methods"]
    assert oversized_classes(ast.parse(small)) == []
