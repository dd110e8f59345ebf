"""Keras callbacks of the training loop: one log line and one history entry per epoch, and the
per-epoch checkpoint.

Keras' own ModelCheckpoint/BackupAndRestore write to local or tf.io paths only and keep no
history across attempts; trainkit's CheckpointStore gives the same layout to every image on any
URI (s3:// included), so the checkpoint callback is written here on top of it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
from checkpointing import save_checkpoint

from trainkit.checkpoints import CheckpointStore
from trainkit.metrics import progress_line, time_left_s

log = logging.getLogger("train")


def last_step_learning_rate(optimizer: Any) -> float:
    """The rate of the optimizer's last step (a schedule is a function of the step count)."""
    rate = optimizer._learning_rate  # noqa: SLF001 (the schedule object itself; .learning_rate is the next step's)
    value = rate(max(0, int(keras.ops.convert_to_numpy(optimizer.iterations)) - 1)) if callable(rate) else rate
    return float(keras.ops.convert_to_numpy(value))


class EpochRecorder(keras.callbacks.Callback):
    """Times the training part of each epoch (validation excluded) and records its metrics."""

    def __init__(self, train_images: int, epochs: int, history: list[dict] | None = None) -> None:
        super().__init__()
        self.train_images = train_images
        self.epochs = epochs
        self.history: list[dict] = list(history or [])
        self._start = 0.0
        self._train_end: float | None = None
        self._epoch_times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        # fit() runs validation through evaluate(), which calls this at the end of each epoch.
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        end = time.perf_counter()
        train_time = (self._train_end or end) - self._start
        entry: dict[str, Any] = {"epoch": epoch + 1}
        entry.update({k: float(v) for k, v in (logs or {}).items()})
        entry["train_time_s"] = round(train_time, 3)
        entry["epoch_time_s"] = round(end - self._start, 3)
        entry["images_per_sec"] = round(self.train_images / train_time, 1) if train_time > 0 else None
        entry.setdefault("learning_rate", last_step_learning_rate(self.model.optimizer))
        self.history.append(entry)
        self._epoch_times.append(end - self._start)
        nan = float("nan")
        log.info(
            "%s",
            progress_line(
                epoch + 1,
                self.epochs,
                entry.get("loss", nan),
                entry.get("accuracy", nan),
                entry.get("val_loss", nan),
                entry.get("val_accuracy", nan),
                entry["images_per_sec"] or 0,
                end - self._start,
                time_left_s(self._epoch_times, epoch + 1, self.epochs),
            ),
        )


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the model after every epoch, with the history so far (must follow EpochRecorder)."""

    def __init__(self, ckpt: CheckpointStore, config: dict[str, Any], recorder: EpochRecorder) -> None:
        super().__init__()
        self.ckpt = ckpt
        self.config = config
        self.recorder = recorder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.ckpt.uri:
            save_checkpoint(self.ckpt, epoch + 1, self.model, self.config, self.recorder.history)
