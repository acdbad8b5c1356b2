"""What import-linter cannot see, and what keeps ``pathgen --help`` fast.

import-linter (``lint-imports`` in ``make lint``) checks the layers of ``pathgen`` and
the repository's ``workers/`` folder; it cannot follow imports of ``pathgen.workers``
(the installed name of ``workers/``), so the rule "only the CLI imports the workers"
is checked here from the source.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Modules ``import pathgen.cli.app`` (what ``pathgen --help`` runs) must not load.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "torch",
    "numpy",
    "PIL",
    "openslide",
    "open_clip",
    "fastapi",
    "uvicorn",
    "pydantic",
    "jinja2",
    "openai",
    "mistralai",
    "pathgen.settings",
    "pathgen.store",
    "pathgen.runs",
    "pathgen.workers",
    "rich.live",
    "rich.table",
)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_the_cli_imports_the_workers() -> None:
    offenders = []
    for path in sorted((REPO / "pathgen").rglob("*.py")):
        if path.is_relative_to(REPO / "pathgen" / "cli"):
            continue
        if any(
            m == "pathgen.workers" or m.startswith("pathgen.workers.")
            for m in _imported_modules(path)
        ):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"library modules importing pathgen.workers: {offenders}"


def test_the_rule_above_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from pathgen.workers.worker import main\n")
    assert "pathgen.workers.worker" in _imported_modules(sample)


def _heavy_after_import(module: str) -> list[str]:
    code = (
        f"import json, sys; import {module}; "
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    return json.loads(out.stdout)


def test_cli_app_imports_nothing_heavy() -> None:
    assert _heavy_after_import("pathgen.cli.app") == []
    # the check sees heavy imports where there are some
    assert "sqlalchemy" in _heavy_after_import("pathgen.runs.progress")
