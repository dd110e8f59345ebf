"""The commands of the README and ``docs/`` run as written on a fresh clone.

Every ``python -m eksml...`` the README or a page of ``docs/`` shows is written the way it runs from a clone
(``PYTHONPATH=plugins .venv/bin/python -m eksml...``: a bare ``python -m eksml`` fails with
"No module named 'eksml'"); and the offline ones among them (no AWS, no running server) are
run, exactly as written, in a copy of the tracked files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(path.read_text() for path in DOCS)
PREFIX = "PYTHONPATH=plugins .venv/bin/python -m eksml."
#: Commands that need neither AWS nor a running Airflow: run as written.
OFFLINE = ("eksml.cluster.eksctl render", "eksml.render --profile aws", "eksml.prerequisites", "eksml.registry list")


def readme_commands() -> list[str]:
    """Inline code and code-block lines of the README and docs/ that run a module of the package."""
    text = re.sub(r"<!--.*?-->", "", TEXT, flags=re.DOTALL)  # generator markers are not commands
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s.strip() for s in spans if re.search(r"python[^ ]* -m eksml\.", s)]


def test_every_module_command_is_written_as_it_runs():
    commands = readme_commands()
    assert len(commands) > 10
    bare = [c for c in commands if PREFIX not in c]
    assert not bare, f"commands that fail as written (No module named 'eksml'): {bare}"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The tracked files, as a fresh clone has them, with the set-up's virtualenvs."""
    target = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for venv in (".venv", ".venvs"):
        (target / venv).symlink_to((ROOT / venv).resolve())
    return target


@pytest.mark.parametrize("offline", OFFLINE)
def test_offline_commands_run_as_written(clone, tmp_path, offline):
    (command,) = {c for c in readme_commands() if offline in c}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EKSML_", "AIRFLOW"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "EKSML_STORE_URI": (tmp_path / "store").as_uri()}
    result = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"
    assert result.stdout.strip(), command
