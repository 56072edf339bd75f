"""The code's layout rules that a linter does not check: no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("apps", "workers", "webapp", "bench", "tests")


def _modules():
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            yield path


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in _modules():
        here = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(node, here, path.name == "__init__.py")
            if source == here or not source.startswith(OURS):
                continue
            for alias in node.names:
                # A private name, or a public one renamed private on import (the name another
                # module needs is the public one: use it as it is).
                for name in (alias.name, alias.asname or ""):
                    if name.startswith("_") and not name.startswith("__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {source}.{name}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)
