"""What a user installs is what is tested: the wheel, installed outside the checkout.

The wheel is built from a copy of this tree, installed into a fresh virtual environment
in a temporary folder (its dependencies come from this environment through a ``.pth``
file: only directories, so no editable-install finder of this checkout comes along),
and ``pathgen db upgrade`` and ``pathgen demo`` run from a folder that is not the
checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
    "demo-run", "pathgen-data", "bench-cache", "*.db", "*.db-wal", "*.db-shm",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of this tree (``pip wheel --no-deps``)."""
    src = tmp_path_factory.mktemp("src") / "pathgen"
    shutil.copytree(REPO, src, ignore=SKIP)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True,
    )  # fmt: skip
    (built,) = out.glob("pathgen-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; dependencies from this environment."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [p for p in (*site.getsitepackages(), *sys.path) if p.endswith("site-packages")]
    Path(purelib, "_project_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--no-deps", "--no-index", str(wheel)],
        check=True,
    )  # fmt: skip
    return root


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PATHGEN_"))}
    env.update(HOME=str(tmp), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    return env


def test_wheel_holds_templates_and_migrations_and_no_top_level_workers(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"pathgen", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    for shipped in (
        "pathgen/assets/prompts/describe_v1.jinja2",
        "pathgen/assets/prompts/retrieval/breast.yaml",
        "pathgen/assets/prompts/vocabulary/morphology.yaml",
        "pathgen/assets/db/env.py",
        "pathgen/assets/db/script.py.mako",
        "pathgen/assets/db/versions/0001_initial.py",
        "pathgen/assets/alembic.ini",
        "pathgen/workers/worker.py",
        "pathgen/web/templates/base.html",
        "pathgen/web/static/openseadragon/openseadragon.min.js",
        "pathgen/web/static/openseadragon/images/zoomin_rest.png",
        "pathgen/web/static/openseadragon/LICENSE.txt",
    ):
        assert shipped in names, shipped


def test_every_source_file_is_in_the_wheel(wheel: Path) -> None:
    """A package missing from ``[tool.setuptools] packages`` would ship without its code."""
    names = set(zipfile.ZipFile(wheel).namelist())
    where = {
        "pathgen": "pathgen",
        "workers": "pathgen/workers",
        "prompts": "pathgen/assets/prompts",
    }
    where["db"] = "pathgen/assets/db"
    missing = []
    for folder, target in where.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(REPO / folder).as_posix()
                if f"{target}/{rel}" not in names:
                    missing.append(f"{folder}/{rel}")
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert missing == [], (
        f"not in the wheel: {missing}; add the package to [tool.setuptools] packages "
        f"(now {packages['packages']}) or its files to package-data in pyproject.toml"
    )


def test_installed_wheel_upgrades_a_database_and_runs_the_demo(venv: Path, tmp_path: Path) -> None:
    python, pathgen = venv / "bin" / "python", venv / "bin" / "pathgen"
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(tmp_path)
    where = subprocess.run(
        [str(python), "-c", "import sys, pathgen.assets as a; print(a.__file__); "
         "print(any('editable' in repr(f) for f in sys.meta_path))"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(venv)) and where[1] == "False", where

    db = tmp_path / "fresh.db"
    up = subprocess.run(
        [str(pathgen), "db", "upgrade"],
        cwd=work, env={**env, "PATHGEN_DB_URL": f"sqlite+aiosqlite:///{db}"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    assert "database at revision" in up.stdout and "Traceback" not in up.stderr

    demo = subprocess.run(
        [str(pathgen), "demo", "--dir", str(tmp_path / "demo"), "--log-format", "json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    summary = next(
        json.loads(line) for line in demo.stdout.splitlines() if '"event": "summary"' in line
    )
    assert summary["exit_code"] == 0 and summary["outcome"] == "completed"
    assert summary["totals"]["done"] > 0 and summary["totals"]["failed"] == 0
    version = subprocess.run(
        [str(pathgen), "version"], cwd=work, env=env, capture_output=True, text=True, check=True
    )
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert version.stdout.strip() == project["version"]
