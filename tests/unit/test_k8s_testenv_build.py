"""tools/k8s-testenv/build.sh: builds are keyed by the pinned sources, found without Go once
built, and a missing Go is reported with what to install (the k8s tests skip with that text)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "k8s-testenv"


def locate(tools: Path, cache: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EKSML_K8S_TESTENV_CACHE": str(cache)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", str(tools / "build.sh"), "--locate"], capture_output=True, text=True, env=env, check=False
    )


def _no_go_path(tmp_path: Path) -> str:
    """A PATH with the shell tools build.sh uses and no ``go``."""
    bin_dir = tmp_path / "bin-without-go"
    bin_dir.mkdir()
    for tool in ("bash", "find", "sort", "xargs", "sha256sum", "cut", "sed", "dirname", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _key(result: subprocess.CompletedProcess) -> str:
    match = re.search(r"/([0-9a-f]{16})\)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return match.group(1)


def test_without_go_it_says_what_is_missing(tmp_path):
    result = locate(TOOLS, tmp_path / "cache", path=_no_go_path(tmp_path))
    assert result.returncode == 3
    assert "no 'go' on PATH" in result.stderr and "Go >= 1.21" in result.stderr and "go.dev/dl" in result.stderr


def test_a_finished_build_is_found_without_go(tmp_path):
    cache = tmp_path / "cache"
    if shutil.which("go") is None:
        pytest.skip("needs go to learn the key of these pins")
    key = _key(locate(TOOLS, cache))
    (cache / key / "bin").mkdir(parents=True)
    (cache / key / "complete").touch()
    result = locate(TOOLS, cache, path=_no_go_path(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == str(cache / key / "bin")


def test_the_key_follows_the_pinned_sources(tmp_path):
    if shutil.which("go") is None:
        pytest.skip("needs go")
    copy = tmp_path / "k8s-testenv"
    shutil.copytree(TOOLS, copy)
    first = _key(locate(copy, tmp_path / "cache"))
    assert _key(locate(copy, tmp_path / "cache")) == first  # stable
    (copy / "README.md").write_text("notes only\n")
    assert _key(locate(copy, tmp_path / "cache")) == first  # documentation does not rebuild
    gosum = copy / "kwok" / "go.sum"
    gosum.write_text(gosum.read_text() + "\n")
    assert _key(locate(copy, tmp_path / "cache")) != first
