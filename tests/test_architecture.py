"""The layers of DESIGN.md, read from the code: what each layer may import, print, read and reach.

Each rule is a scan of the source tree, so a new upward import, a ``print`` in the engine or a
``repo.store`` side door fails here with the file and line, not in a review.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "packvault"

# Only these print, read the environment or know argparse: they are the edges (DESIGN "The engine reports,
# the edge prints").  ``storage/`` reads the AWS environment the way every AWS tool does and is held to this
# by its own tests.
EDGES = ("cli", "serverless")
ENGINE = ("repository", "maintenance", "archive", "crypto", "chunking")


def _modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (SRC / package).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


def _findings(paths: list[Path], visit) -> list[str]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            what = visit(node)
            if what:
                found.append(f"{_rel(path)}:{node.lineno}: {what}")
    return found


def test_the_engine_neither_prints_nor_reads_the_environment():
    def visit(node: ast.AST) -> str | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            return "print()"
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return f"os.{node.attr}"
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ("environ", "getenv") for alias in node.names)
        ):
            return "from os import environ/getenv"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            if "argparse" in names:
                return "import argparse"
        return None

    assert _findings(_modules(*ENGINE), visit) == []


def test_only_the_repository_layer_touches_the_store():
    """``repo.store`` (or ``self.repo.store``) outside ``repository/`` bypasses the API that keeps store names
    (and the rules for writing them) in one place."""

    def visit(node: ast.AST) -> str | None:
        if not (isinstance(node, ast.Attribute) and node.attr == "store"):
            return None
        owner = node.value
        named = (isinstance(owner, ast.Name) and owner.id in ("repo", "repository")) or (
            isinstance(owner, ast.Attribute) and owner.attr in ("repo", "repository")
        )
        return f"{ast.unparse(node)}" if named else None

    others = [p for p in _modules("maintenance", "archive", "cli", "serverless")]
    assert _findings(others, visit) == []


def test_item_keys_are_named_constants_outside_the_item_format():
    """An item is read and written through the names in ``archive/items.py``: ``item["p"]`` anywhere else is
    the schema written a second time."""
    keys = {"p", "t", "m", "u", "g", "U", "G", "mt", "at", "ct", "s", "c", "l", "h", "r", "x", "e", "ch", "s3"}

    def visit(node: ast.AST) -> str | None:
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("item", "it"):
            key = node.slice
            if isinstance(key, ast.Constant) and key.value in keys:
                return ast.unparse(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            holder = node.func.value
            if (
                node.func.attr in ("get", "pop", "setdefault")
                and isinstance(holder, ast.Name)
                and holder.id == "item"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in keys
            ):
                return ast.unparse(node)
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value in keys:
            right = node.comparators[0]
            if isinstance(node.ops[0], ast.In | ast.NotIn) and isinstance(right, ast.Name) and right.id == "item":
                return ast.unparse(node)
        return None

    outside = ("items.py",)
    paths = [p for p in _modules("archive", "maintenance", "cli", "serverless") if p.name not in outside]
    assert _findings(paths, visit) == []


LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (make install adds it)")
def test_import_contracts_hold():
    """The import-linter contracts of pyproject.toml (layers of DESIGN.md, the two edges independent)."""
    root = SRC.parents[1]
    env = {"PYTHONPATH": str(root / "src"), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run([str(LINT_IMPORTS)], cwd=root, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (make install adds it)")
def test_an_upward_import_breaks_the_contracts(tmp_path):
    """The contracts are not decoration: a copy of the package with one upward import fails them."""
    root = SRC.parents[1]
    shutil.copytree(SRC, tmp_path / "src" / "packvault", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    store = tmp_path / "src" / "packvault" / "storage" / "store.py"
    store.write_text(store.read_text() + "\nfrom ..archive import items  # noqa: E402  (an upward import)\n")
    env = {"PYTHONPATH": str(tmp_path / "src"), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run([str(LINT_IMPORTS)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "packvault.storage is not allowed to import packvault.archive" in result.stdout


MAX_LINES = 420


def test_modules_are_small_or_say_why_they_are_one_unit():
    """A module over ~400 lines does several jobs, unless its docstring argues that it is one unit."""
    paths = list(SRC.rglob("*.py"))
    too_long = []
    for path in paths:
        text = path.read_text()
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > MAX_LINES and "one unit" not in docstring:
            too_long.append(f"{_rel(path)}: {text.count(chr(10))} lines")
    assert too_long == []
