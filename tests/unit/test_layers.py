"""The package's import graph keeps its shape: no circle, no import from a lower layer into a higher one.

The contracts live in ``pyproject.toml`` (import-linter), and ``make test`` runs ``lint-imports``
before the tests; these tests run the same check, prove that it catches a breach, and keep the
layer list complete (a module left out of every layer would escape it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.project_files import ROOT

PACKAGE = ROOT / "plugins" / "eksml"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` as ``make test`` runs it, over the ``plugins/`` and ``pyproject.toml`` under ``root``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "plugins"), env.get("PYTHONPATH")]))
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_and_the_circle_it_makes_are_caught(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "plugins" / "eksml", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    settings = tmp_path / "plugins" / "eksml" / "settings.py"
    settings.write_text(settings.read_text() + "\nimport eksml.pipeline  # noqa: E402,F401\n")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "No import circles BROKEN" in result.stdout
    assert "eksml.settings is not allowed to import eksml.pipeline" in result.stdout


def test_every_module_of_the_package_stands_in_a_layer() -> None:
    (layered,) = [c for c in contracts() if c["type"] == "layers"]
    named = {name.strip() for layer in layered["layers"] for name in layer.split("|")}
    children = {
        f"eksml.{path.stem}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert children - named == set(), "add these to a layer in pyproject.toml"
    assert named - children == set(), "these layers name no module"
