"""PNG plots of an evaluation, so a person can look instead of read (matplotlib, Agg backend)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a pod or a scheduler worker
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: history.json keys of each training image -> one name. TensorFlow (Keras) writes
#: loss/accuracy/val_loss/val_accuracy; MXNet writes train_*/test_*.
_SERIES = {
    "train loss": ("loss", "train_loss"),
    "test loss": ("val_loss", "test_loss"),
    "train accuracy": ("accuracy", "train_accuracy"),
    "test accuracy": ("val_accuracy", "test_accuracy"),
}


def _series(history: Sequence[dict[str, Any]], keys: tuple[str, ...]) -> list[float] | None:
    for key in keys:
        values = [row.get(key) for row in history]
        if values and all(isinstance(v, (int, float)) for v in values):
            return [float(v) for v in values]
    return None


def training_curves_figure(history: Sequence[dict[str, Any]], title: str) -> Figure | None:
    """Loss and accuracy per epoch (integer epoch ticks, also for a single epoch); None without series."""
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    found = {name: _series(history, keys) for name, keys in _SERIES.items()}
    if not history or not any(found.values()):
        return None
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, values in found.items():
        if values:
            ax = loss_ax if "loss" in name else acc_ax
            ax.plot(epochs, values, marker="o", linestyle="--" if name.startswith("train") else "-", label=name)
    for ax, label in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        # One tick per epoch (at most ~10): a 1-epoch run shows "1", never 0.96/0.98/1.00/...
        ax.set_xticks(epochs if len(epochs) <= 10 else epochs[:: max(1, len(epochs) // 10)])
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(_wrap(title, 100))
    fig.tight_layout()
    return fig


def training_curves(history: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Write :func:`training_curves_figure`; False (nothing written) when the history has no such series."""
    fig = training_curves_figure(history, title)
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _wrap(title: str, width: int) -> str:
    """Long titles (they carry a version id) on several lines instead of cut at the edge."""
    return "\n".join(textwrap.wrap(title, width)) or title


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix with the counts written in each cell."""
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in ticks:
        for j in ticks:
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class_figure(
    candidate: dict[str, float | None], champion: dict[str, float | None] | None, title: str
) -> Figure:
    """Per-class accuracy of the candidate, beside the champion's when there is one.

    The accuracy axis starts a little below the lowest bar (not at 0), so that a class where
    the candidate is worse than the champion shows as a visible gap; the legend sits outside
    the axes, over no bar; the title wraps instead of running off the figure.
    """
    names = list(candidate)
    x = np.arange(len(names))
    width = 0.4 if champion else 0.8
    values = [candidate[n] or 0 for n in names] + ([champion.get(n) or 0 for n in names] if champion else [])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.bar(x - (width / 2 if champion else 0), [candidate[n] or 0 for n in names], width, label="candidate")
    if champion:
        ax.bar(x + width / 2, [champion.get(n) or 0 for n in names], width, label="champion")
    ax.set_xticks(x, names, rotation=30, ha="right")
    low = max(0.0, np.floor((min(values) - 0.05) * 20) / 20)  # a multiple of 0.05 below the lowest bar
    ax.set_ylim(low, 1.0)
    ax.set_ylabel("accuracy" + (f" (axis from {low:.2f})" if low > 0 else ""))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(_wrap(title, 90))
    fig.tight_layout()
    return fig


def per_class(
    candidate: dict[str, float | None], champion: dict[str, float | None] | None, path: Path, title: str
) -> None:
    """Write :func:`per_class_figure` as PNG."""
    fig = per_class_figure(candidate, champion, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
