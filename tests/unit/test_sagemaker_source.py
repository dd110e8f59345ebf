"""The script-mode source folder and the DLC table that names what it must add."""

from __future__ import annotations

from pathlib import Path

import pytest

from eksml.sagemaker.images import DEEP_LEARNING_CONTAINERS, training_image
from eksml.sagemaker.operators import stage_source_dir
from eksml.specs import TRAINING_IMAGES as SPEC_IMAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("framework", sorted(SPEC_IMAGES))
def test_staged_source_has_the_image_layout(framework: str, tmp_path: Path) -> None:
    image = SPEC_IMAGES[framework]
    dest = stage_source_dir(image, ROOT / "images", tmp_path / "src", training_image(framework).source_requirements)
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert "train.py" in names
    assert {"trainkit/__init__.py", "trainkit/cli.py", "trainkit/store.py", "trainkit/data.py"} <= names
    expected_code = {p.name for p in (ROOT / "images" / image).glob("*.py")}
    assert expected_code <= names
    # The image's own requirements (which pin the framework itself) must not reach the DLC.
    assert (dest / "requirements.txt").read_text().splitlines() == list(training_image(framework).source_requirements)
    assert not any("__pycache__" in n or n.endswith((".sh", ".in")) or n.startswith("Dockerfile") for n in names)


def test_every_training_framework_has_a_dlc() -> None:
    assert set(DEEP_LEARNING_CONTAINERS) == set(SPEC_IMAGES)


def test_tensorflow_dlc_pins_the_image_fsspec() -> None:
    """The TF DLC's Python takes the same fsspec the image pins; keep them in step."""
    pins = {
        line.split("==")[0]: line
        for line in (ROOT / "images" / "tf-fashion-mnist" / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    for requirement in DEEP_LEARNING_CONTAINERS["tensorflow"].source_requirements:
        assert pins[requirement.split("==")[0]] == requirement


def test_missing_image_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no image folder"):
        stage_source_dir("no-such-image", ROOT / "images", tmp_path / "src")
