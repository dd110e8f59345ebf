"""PNG plots of an evaluation, so a person can look instead of read (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a pod or a scheduler worker
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

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


def training_curves(history: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Loss and accuracy per epoch; False (nothing written) when the history has no such series."""
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    found = {name: _series(history, keys) for name, keys in _SERIES.items()}
    if not history or not any(found.values()):
        return False
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, values in found.items():
        if values:
            ax = loss_ax if "loss" in name else acc_ax
            ax.plot(epochs, values, marker="o", linestyle="--" if name.startswith("train") else "-", label=name)
    for ax, label in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


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
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class(candidate: dict[str, float | None], champion: dict[str, float | None] | None,
              path: Path, title: str) -> None:
    """Per-class accuracy of the candidate, beside the champion's when there is one."""
    names = list(candidate)
    x = np.arange(len(names))
    width = 0.4 if champion else 0.8
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(x - (width / 2 if champion else 0), [candidate[n] or 0 for n in names], width, label="candidate")
    if champion:
        ax.bar(x + width / 2, [champion.get(n) or 0 for n in names], width, label="champion")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
