"""The layers hold (docs/architecture.md): every import in the package, lazy ones inside functions
included, read from the source; a rule broken names the module and what it imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aifactory"

# The pure core reads no clock and does no I/O: of the standard library it may use only these.
CORE_STDLIB = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "difflib",
    "enum",
    "functools",
    "heapq",
    "itertools",
    "math",
    "typing",
}
CORE_THIRD_PARTY = {"numpy"}  # placement arithmetic (FGD)
# They read the factory through `core.view.FloorState`, never `Factory` itself.
READERS = (
    "aifactory.core.policies",
    "aifactory.core.admission",
    "aifactory.core.explain",
    "aifactory.core.accounting",
    "aifactory.core.reclaim",
    "aifactory.core.reservation",
    "aifactory.core.placement",
)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> Iterator[str]:
    """Every module `path` imports, absolute (relative imports resolved)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from aifactory import live`


def modules(root: Path) -> list[tuple[str, set[str]]]:
    return [(module_name(p, root), set(imports(p, root))) for p in sorted(root.rglob("*.py"))]


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def broken(rule: str, root: Path = PACKAGE) -> list[str]:
    out = []
    for name, imported in modules(root):
        for target in sorted(imported):
            top = target.split(".")[0]
            if rule == "core" and under(name, "aifactory.core"):
                ok = under(target, "aifactory.core") or top in CORE_STDLIB | CORE_THIRD_PARTY
            elif rule == "twin-plan" and under(name, "aifactory.twin", "aifactory.plan"):
                ok = not under(target, "aifactory.live", "aifactory.cli", "aifactory.serve")
            elif rule == "serve" and under(name, "aifactory.serve"):
                ok = not under(target, "aifactory.live", "aifactory.cli") or under(target, "aifactory.live.tokens")
            elif rule == "ui":
                ok = top not in ("typer", "rich", "click") or under(name, "aifactory.cli")
            elif rule == "view" and under(name, *READERS):
                ok = not under(target, "aifactory.core.factory")
            elif rule == "no-cli":
                ok = not under(target, "aifactory.cli") or under(name, "aifactory.cli")
            else:
                continue
            if not ok:
                out.append(f"{name} imports {target}")
    return out


@pytest.mark.parametrize(
    "rule",
    [
        "core",  # the core imports no shell, no clock, no I/O
        "twin-plan",  # the twin and the planner import nothing of the live factory
        "serve",  # the model server uses the floor only through its token check
        "ui",  # only the CLI prints: Typer and rich live there
        "no-cli",  # nothing below the CLI imports it
        "view",  # policies, admission, explanations, accounting read a FloorState, not the Factory
    ],
)
def test_layer_rule(rule: str) -> None:
    assert broken(rule) == []


def test_the_rules_see_a_breach(tmp_path: Path) -> None:
    """The reader finds lazy and relative imports (a rule that cannot fail proves nothing)."""
    root = tmp_path / "aifactory"
    (root / "core").mkdir(parents=True)
    (root / "twin").mkdir()
    (root / "core" / "probe.py").write_text("def f():\n    import time\n    from ..live import service\n")
    (root / "twin" / "probe.py").write_text("from aifactory.live.store import Store\nimport rich\n")
    assert broken("core", root) == [
        "aifactory.core.probe imports aifactory.live",
        "aifactory.core.probe imports aifactory.live.service",
        "aifactory.core.probe imports time",
    ]
    assert broken("twin-plan", root) == [
        "aifactory.twin.probe imports aifactory.live.store",
        "aifactory.twin.probe imports aifactory.live.store.Store",
    ]
    assert broken("ui", root) == ["aifactory.twin.probe imports rich"]
