"""tools/k8s-node/lib.sh's ``make_room``: before an image build, what the new key supersedes goes,
then on a nearly full disk the working containers failed builds left and buildah's layer cache.
Builds of the Airflow image failed with "no space left on device" while the old key's image and
archive and earlier builds' layers and containers were still on the disk (the second time with 33
GB free at its start, above the 25 GB that then triggered any removal). ``buildah`` and ``df``
are stand-ins here that keep the free space in a file (the real ones are exercised by
tests/k8s/test_node_image_cache.py, which must not empty a developer's layer cache)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "0123456789abcdef", "fedcba9876543210"


def make_room(
    tmp_path: Path, free_gb: int, min_gb: int | None, room_gb: int | None = None, building: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``make_room airflow NEW`` with the old key's image and archive present, ``EKSML_BUILD_MIN_FREE_GB``
    = ``min_gb`` and the caller's ``room_gb`` (None: unset), while another build runs or not;
    returns the run and the stand-in buildah's removals. Removing a tag frees 10 GB, the working
    containers 5 GB, pruning untagged images 20 GB."""
    bin_dir, cache, store = tmp_path / "bin", tmp_path / "cache", tmp_path / "store"
    for folder in (bin_dir, cache, store):
        folder.mkdir(parents=True)
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
  rm) echo $(( $(cat {state}) + 5 )) > {state} ;;
esac
"""
    )
    (bin_dir / "pgrep").write_text(f"#!/bin/bash\nexit {0 if building else 1}\n")
    (bin_dir / "df").write_text(
        f'#!/bin/bash\necho "Filesystem 1G-blocks Used Available Capacity Mounted"\n'
        f'for _ in "${{@:3}}"; do echo "/dev/x 100 0 $(cat {state}) 0% /"; done\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    room = "" if room_gb is None else f"room_gb={room_gb} "
    lib = ROOT / "tools" / "k8s-node" / "lib.sh"
    script = f"set -euo pipefail; cache={cache}; source {lib}; {room}make_room airflow {NEW}"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if min_gb is not None:
        env["EKSML_BUILD_MIN_FREE_GB"] = str(min_gb)
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30, check=False)
    removals = [c for c in calls.read_text().splitlines() if c.startswith(("rmi", "rm "))] if calls.exists() else []
    return result, removals


def test_the_superseded_key_goes_before_every_build_and_nothing_else_when_there_is_room(tmp_path):
    result, removals = make_room(tmp_path, free_gb=40, min_gb=25)
    assert result.returncode == 0, result.stderr
    assert removals == [f"rmi localhost/airflow:{OLD}"]  # not eksml-base's, no container, not --prune
    assert not (tmp_path / "cache" / f"airflow-{OLD}.tar").exists()
    assert (tmp_path / "cache" / f"eksml-base-{OLD}.tar").exists()


def test_short_the_leftover_containers_go_and_the_layer_cache_stays_when_that_is_enough(tmp_path):
    result, removals = make_room(tmp_path, free_gb=12, min_gb=25)
    assert result.returncode == 0, result.stderr
    assert removals == [f"rmi localhost/airflow:{OLD}", "rm --all"]
    assert "22 GB free, less than the 25" in result.stderr and "27 GB free" in result.stderr


def test_still_short_the_untagged_layers_go_too(tmp_path):
    result, removals = make_room(tmp_path, free_gb=5, min_gb=25)
    assert result.returncode == 0, result.stderr
    assert removals == [f"rmi localhost/airflow:{OLD}", "rm --all", "rmi --prune"]
    assert "40 GB free" in result.stderr


def test_a_running_build_keeps_its_containers(tmp_path):
    result, removals = make_room(tmp_path, free_gb=5, min_gb=25, building=True)
    assert result.returncode == 0, result.stderr
    assert removals == [f"rmi localhost/airflow:{OLD}", "rmi --prune"]


def test_the_callers_need_is_the_default_and_the_variable_overrides_it(tmp_path):
    """The Airflow image asks for 40 GB (build-images.sh): with 33 free, as when its build failed,
    the old key's 10 leave 43, enough; with the caller's 40 and 18 free, the containers go too."""
    result, removals = make_room(tmp_path, free_gb=33, min_gb=None, room_gb=40)
    assert removals == [f"rmi localhost/airflow:{OLD}"], result.stderr
    result, removals = make_room(tmp_path / "b", free_gb=18, min_gb=None, room_gb=40)
    assert removals == [f"rmi localhost/airflow:{OLD}", "rm --all", "rmi --prune"], result.stderr
    result, removals = make_room(tmp_path / "c", free_gb=18, min_gb=20, room_gb=40)
    assert removals == [f"rmi localhost/airflow:{OLD}"], result.stderr
    assert "room_gb=40 cached_image airflow" in (ROOT / "tools" / "k8s-node" / "build-images.sh").read_text()
