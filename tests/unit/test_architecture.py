"""DESIGN §7 dependency rule: http, runtime → service → store → domain; domain is stdlib only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer_imports(layer: str) -> dict[str, set[str]]:
    return {str(p.relative_to(APP)): _imports(p) for p in (APP / layer).rglob("*.py")}


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    for path, names in _layer_imports("domain").items():
        for name in names:
            top = name.split(".")[0]
            assert name.startswith("app.domain") or top in sys.stdlib_module_names, f"{path} imports {name}"


def test_nothing_imports_http() -> None:
    for path in APP.rglob("*.py"):
        if "http" in path.relative_to(APP).parts or path.name == "__main__.py":
            continue
        assert not any(n.startswith("app.http") for n in _imports(path)), path


def test_store_does_not_import_service_runtime_or_http() -> None:
    for path, names in _layer_imports("store").items():
        assert not any(n.startswith(("app.service", "app.runtime", "app.http")) for n in names), path


def test_service_does_not_import_runtime() -> None:
    for path, names in _layer_imports("service").items():
        assert not any(n.startswith(("app.runtime", "app.http")) for n in names), path
