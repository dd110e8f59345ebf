"""The evaluation plots read right: the per-class title is not cut off, its legend covers no
bar, its accuracy axis shows a regression of a few points, and a 1-epoch run's curves have
integer epoch ticks. Measured on the figures matplotlib lays out (in the inference image's
virtualenv, where the plots are drawn)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venvs" / "inference" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTHON.exists(), reason="virtualenv .venvs/inference missing: run scripts/setup.sh")

#: Runs in the inference venv; prints the layout facts as JSON.
PROBE = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from eksml_inference import plots

plots.plt.close = lambda *a, **k: None  # keep the figures the writers draw, to measure them


def drawn(writer, *args):
    # The figure a plot writer saves (the same one the PNG holds).
    with tempfile.TemporaryDirectory() as tmp:
        writer(*args[:-1], f"{tmp}/plot.png", args[-1])
    return plots.plt.gcf()

names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
candidate = dict(zip(names, [0.86, 0.98, 0.84, 0.90, 0.85, 0.97, 0.70, 0.96, 0.98, 0.96]))
champion = dict(zip(names, [0.88, 0.98, 0.86, 0.91, 0.84, 0.98, 0.74, 0.95, 0.98, 0.97]))
title = ("per-class accuracy of 20261123T030000-tensorflow-9d392e vs champion 20261116T030000-mxnet-1a2b3c "
         "(file:///home/someone/projects/eksml/.local/store/models/fashion-mnist)")
fig = drawn(plots.per_class, candidate, champion, title)
fig.canvas.draw()
renderer = fig.canvas.get_renderer()
ax = fig.axes[0]
box = lambda artist: artist.get_window_extent(renderer)
figure = fig.bbox
title_box = box(ax.title)
legend_box = box(ax.get_legend())
bars = [box(p) for p in ax.patches]
overlaps = [i for i, b in enumerate(bars) if b.overlaps(legend_box)]
low, high = ax.get_ylim()

history = [{"epoch": 1, "loss": 0.6, "accuracy": 0.78, "val_loss": 0.5, "val_accuracy": 0.81}]
curves = drawn(plots.training_curves, history, "training of 20261123T030000-tensorflow-9d392e")
curves.canvas.draw()
ticks = [[t.get_text() for t in a.get_xticklabels() if a.get_xlim()[0] <= t.get_position()[0] <= a.get_xlim()[1]]
         for a in curves.axes]
print(json.dumps({
    "title_inside": bool(figure.x0 <= title_box.x0 and title_box.x1 <= figure.x1 and title_box.y1 <= figure.y1),
    "legend_over_bars": overlaps, "ylim": [float(low), float(high)], "epoch_ticks": ticks,
}))
"""


@pytest.fixture(scope="module")
def layout() -> dict:
    result = subprocess.run(
        [str(PYTHON), "-c", PROBE, str(ROOT / "images" / "inference")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_per_class_title_is_not_clipped(layout):
    assert layout["title_inside"]


def test_per_class_legend_covers_no_bar(layout):
    assert layout["legend_over_bars"] == []


def test_per_class_axis_shows_a_regression(layout):
    """Shirt drops from 0.74 to 0.70: on a 0-1 axis that is 4% of the height; here far more."""
    low, high = layout["ylim"]
    assert 0.5 <= low <= 0.70 and high == pytest.approx(1.0)
    assert (0.74 - 0.70) / (high - low) > 0.1


def test_one_epoch_run_has_integer_epoch_ticks(layout):
    for ticks in layout["epoch_ticks"]:
        assert ticks == ["1"], ticks
