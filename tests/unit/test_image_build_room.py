"""tools/k8s-node/lib.sh's ``make_room``: before an image build on a nearly full disk, what the new
key supersedes goes first, then buildah's layer cache. A build of the Airflow image failed with
"no space left on device" while the old key's image and archive and earlier builds' layers were
still on the disk. ``buildah`` and ``df`` are stand-ins here that keep the free space in a file
(the real ones are exercised by tests/k8s/test_node_image_cache.py, which must not empty a
developer's layer cache)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "0123456789abcdef", "fedcba9876543210"


def make_room(tmp_path: Path, free_gb: int, min_gb: int) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``make_room airflow NEW`` with the old key's image and archive present; returns the run and
    the stand-in buildah's calls. Removing a tag frees 10 GB, pruning untagged images 20 GB."""
    bin_dir, cache, store = tmp_path / "bin", tmp_path / "cache", tmp_path / "store"
    for folder in (bin_dir, cache, store):
        folder.mkdir()
    (cache / f"airflow-{OLD}.tar").write_text("old archive")
    (cache / f"eksml-base-{OLD}.tar").write_text("another image's archive")
    state, calls = tmp_path / "free", tmp_path / "calls"
    state.write_text(str(free_gb))
    (bin_dir / "buildah").write_text(
        f"""#!/bin/bash
echo "$*" >> {calls}
case "$1" in
  info) echo {store} ;;
  images) printf 'localhost/airflow:{OLD}\\nlocalhost/eksml-base:{OLD}\\n' ;;
  rmi) if [ "$2" = --prune ]; then add=20; else add=10; fi; echo $(( $(cat {state}) + add )) > {state} ;;
esac
"""
    )
    (bin_dir / "df").write_text(
        f'#!/bin/bash\necho "Filesystem 1G-blocks Used Available Capacity Mounted"\n'
        f'for _ in "${{@:3}}"; do echo "/dev/x 100 0 $(cat {state}) 0% /"; done\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = (
        f"set -euo pipefail; cache={cache}; source {ROOT / 'tools' / 'k8s-node' / 'lib.sh'}; make_room airflow {NEW}"
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "EKSML_BUILD_MIN_FREE_GB": str(min_gb)}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=False)
    removals = [c for c in calls.read_text().splitlines() if c.startswith("rmi")] if calls.exists() else []
    return result, removals


def test_enough_room_removes_nothing(tmp_path):
    result, removals = make_room(tmp_path, free_gb=40, min_gb=25)
    assert result.returncode == 0, result.stderr
    assert removals == [] and (tmp_path / "cache" / f"airflow-{OLD}.tar").exists()


def test_the_superseded_key_goes_first_and_the_layer_cache_stays_when_that_is_enough(tmp_path):
    result, removals = make_room(tmp_path, free_gb=18, min_gb=25)
    assert result.returncode == 0, result.stderr
    assert removals == [f"rmi localhost/airflow:{OLD}"]  # not eksml-base's, not --prune
    assert not (tmp_path / "cache" / f"airflow-{OLD}.tar").exists()
    assert (tmp_path / "cache" / f"eksml-base-{OLD}.tar").exists()
    assert "18 GB free, less than 25" in result.stderr and "28 GB free" in result.stderr


def test_still_short_the_untagged_layers_go_too(tmp_path):
    result, removals = make_room(tmp_path, free_gb=5, min_gb=25)
    assert result.returncode == 0, result.stderr
    assert removals == [f"rmi localhost/airflow:{OLD}", "rmi --prune"]
    assert "35 GB free" in result.stderr
