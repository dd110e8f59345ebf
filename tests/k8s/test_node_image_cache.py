"""tools/k8s-node/lib.sh's image cache: a new key of an image replaces the others' tags and
archives (the Airflow image left ~8 GB per key behind, and a build stopped on "no space left
on device"), and touches no other image's. Real buildah, images made from scratch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from k8s_node import missing_prerequisites

pytestmark = [pytest.mark.k8s, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]
NAME = "eksml-cache-probe"
KEYS = ("0123456789abcdef", "fedcba9876543210")


def build(cache: Path, name: str, key: str) -> str:
    script = f"""
set -euo pipefail
cache={cache}
# Never make room here: that removes buildah's untagged images, the layer cache of an image
# building beside this test (make test builds the Airflow image beside these tiers).
export EKSML_BUILD_MIN_FREE_GB=0
source {ROOT / "tools" / "k8s-node" / "lib.sh"}
build_probe() {{ local c; c="$(buildah from scratch)"; buildah config --label probe={key} "$c"; \
buildah commit --quiet --rm "$c" "$2" >/dev/null; }}
cached_image {name} {key} build_probe
"""
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=120).stdout


def tags(name: str) -> set[str]:
    out = subprocess.run(
        ["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"], capture_output=True, text=True, check=True
    ).stdout
    return {line for line in out.splitlines() if line.startswith(f"localhost/{name}:")}


def test_a_new_key_replaces_the_old_ones_and_nothing_else(tmp_path: Path) -> None:
    if why := missing_prerequisites():
        pytest.skip(why)
    other = f"{NAME}-other"  # a name that starts with NAME: its archive must survive
    try:
        build(tmp_path, other, KEYS[0])
        build(tmp_path, NAME, KEYS[0])
        assert tags(NAME) == {f"localhost/{NAME}:{KEYS[0]}"}
        build(tmp_path, NAME, KEYS[1])
        assert tags(NAME) == {f"localhost/{NAME}:{KEYS[1]}"}
        assert sorted(p.name for p in tmp_path.glob("*.tar")) == sorted(
            [f"{NAME}-{KEYS[1]}.tar", f"{other}-{KEYS[0]}.tar"]
        )
        assert tags(other) == {f"localhost/{other}:{KEYS[0]}"}
        assert "built" not in build(tmp_path, NAME, KEYS[1])  # cached: nothing built, nothing pruned
        assert tags(NAME) == {f"localhost/{NAME}:{KEYS[1]}"}
    finally:
        for tag in tags(NAME) | tags(other):
            subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)
