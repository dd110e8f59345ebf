"""The TF image's input pipeline (``images/tf-fashion-mnist/pipeline.py``), run in the image's
virtualenv on synthetic images whose every pixel says where it came from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "images" / "tf-fashion-mnist"
PYTHON = ROOT / ".venvs" / "tf-fashion-mnist" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="no tf-fashion-mnist virtualenv")

SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from network import DEFAULT_RECIPE
from pipeline import training_dataset

# Image i: one pixel of value 50 + i at row 13, column 9 (its mirror image: column 18); label i % 10.
n = 200
x = np.zeros((n, 28, 28), np.uint8)
x[:, 13, 9] = 50 + np.arange(n)
y = np.arange(n) % 10
report = {}
for name, recipe in {
    "plain": DEFAULT_RECIPE.replace(flip=False, shift=0),
    "flip": DEFAULT_RECIPE.replace(flip=True, shift=0),
    "shift": DEFAULT_RECIPE.replace(flip=False, shift=2),
}.items():
    epochs, dataset = [], training_dataset(x, y, 64, recipe, seed=3)
    for _ in range(2):  # as Keras does every epoch: a new iterator on the same dataset
        order, moves, labels_match = [], [], True
        for images, targets in dataset:
            images, targets = images.numpy(), targets.numpy()
            for image, target in zip(images, targets):
                row, col = np.unravel_index(image.argmax(), image.shape)
                i = int(image.max()) - 50
                labels_match &= int(target.argmax()) == i % 10 and np.count_nonzero(image) == 1
                order.append(i)
                moves.append([int(row) - 13, int(col) - 9])
        epochs.append({"order": order, "moves": moves, "dtype": str(images.dtype), "labels_match": bool(labels_match)})
    report[name] = epochs
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def batches() -> dict:
    env = {"PATH": os.environ["PATH"], "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "images" / "common")}
    proc = subprocess.run(
        [str(PYTHON), "-c", SCRIPT, str(IMAGE_DIR)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_image_once_per_epoch_reshuffled(batches: dict) -> None:
    first, second = batches["plain"]
    assert sorted(first["order"]) == list(range(200)) == sorted(second["order"])
    assert first["order"] != second["order"] and first["order"] != list(range(200))
    assert first["dtype"] == "float32"
    assert all(epoch["labels_match"] for runs in batches.values() for epoch in runs)


def test_no_augmentation_leaves_pixels_in_place(batches: dict) -> None:
    assert all(move == [0, 0] for epoch in batches["plain"] for move in epoch["moves"])


def test_augmentation_differs_from_one_epoch_to_the_next(batches: dict) -> None:
    for name in ("flip", "shift"):
        first, second = (dict(zip(e["order"], map(tuple, e["moves"]), strict=True)) for e in batches[name])
        assert first != second, name


def test_flips_mirror_about_half_the_images_and_nothing_else(batches: dict) -> None:
    moves = [m for epoch in batches["flip"] for m in epoch["moves"]]
    mirrored = [m for m in moves if m != [0, 0]]
    assert all(m == [0, 9] for m in mirrored)  # column 9 -> 18, same row
    assert 0.35 < len(mirrored) / len(moves) < 0.65


def test_shifts_stay_within_two_pixels_and_cover_every_offset(batches: dict) -> None:
    moves = [m for epoch in batches["shift"] for m in epoch["moves"]]
    offsets = {tuple(m) for m in moves}
    assert offsets == {(r, c) for r in range(-2, 3) for c in range(-2, 3)}
