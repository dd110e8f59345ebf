"""The TensorFlow part of the entrypoint: train (or resume), export, score, upload.

Imported by train.py only after the arguments and the data were checked, because importing
TensorFlow alone takes seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from callbacks import EpochCheckpoint, EpochRecorder
from checkpointing import load_checkpoint
from exporting import SAVED_MODEL_DIR, cross_entropy, export_model, saved_model_predict
from network import (
    DEFAULT_RECIPE,
    build_model,
    input_spec,
    recalibrate_batch_norm,
    set_schedule,
    steps_per_epoch,
    to_input,
    to_target,
)
from pipeline import training_dataset

from trainkit import store
from trainkit.checkpoints import CheckpointStore
from trainkit.contract import HISTORY as HISTORY_FILE
from trainkit.contract import METRICS as METRICS_FILE
from trainkit.metrics import build_metrics

log = logging.getLogger("train")


class DeviceError(RuntimeError):
    """GPUs were allocated to this container but TensorFlow cannot use them."""


def allocated_gpus(environ: Mapping[str, str]) -> list[str]:
    """GPUs the NVIDIA device plugin gave this container (it names them; base images say "all")."""
    value = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if value.lower() in ("", "all", "none", "void"):
        return []
    return [v for v in value.split(",") if v]


def use_gpus(environ: Mapping[str, str]) -> list[str]:
    """Let TensorFlow take GPU memory as needed; refuse to fall back to the CPU on a GPU node."""
    gpus = tf.config.list_physical_devices("GPU")
    allocated = allocated_gpus(environ)
    if allocated and not gpus:
        raise DeviceError(
            f"{len(allocated)} GPU(s) allocated (NVIDIA_VISIBLE_DEVICES) but TensorFlow "
            f"{tf.__version__} sees none: the image's CUDA libraries do not match the "
            "node's driver; not training on the CPU of a GPU node"
        )
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return [gpu.name for gpu in gpus]


def validation_split(x: np.ndarray, y: np.ndarray, images: int, seed: int) -> tuple[np.ndarray, ...]:
    """Training images minus a seeded random hold-out of ``images``, and the hold-out (empty when 0).

    The hold-out is what per-epoch monitoring and recipe choices look at; the test set is scored
    once, after training, by the exported model.
    """
    if images <= 0:
        return x, y, x[:0], y[:0]
    if images >= len(x):
        raise ValueError(f"--validation-images {images} leaves no training images (of {len(x)})")
    order = np.random.RandomState(seed).permutation(len(x))
    return x[order[images:]], y[order[images:]], x[order[:images]], y[order[:images]]


def train(
    args: argparse.Namespace,
    data: tuple[np.ndarray, ...],
    ckpt: CheckpointStore,
    resume_epoch: int,
    config: dict[str, Any],
) -> tuple[Any, list[dict], float]:
    """Fit the model for ``args.epochs`` epochs, starting after ``resume_epoch``, and recalibrate its
    batch norms; return it, its history and the recalibration's seconds."""
    x_train, y_train, x_val, y_val = validation_split(data[0], data[1], args.validation_images, args.seed)
    seed = args.seed + resume_epoch  # a resumed run does not replay epoch 1's shuffles and augmentation
    keras.utils.set_random_seed(seed)
    steps = steps_per_epoch(len(x_train), args.batch_size)
    if resume_epoch:
        model = load_checkpoint(ckpt, resume_epoch)
        # The schedule spans the whole run: a retry asking for more epochs stretches it from here on.
        set_schedule(model, DEFAULT_RECIPE, args.learning_rate, steps, args.epochs)
        history = ckpt.history()
        log.info(
            "resuming from the checkpoint of epoch %d at %s: training epoch %d onwards",
            resume_epoch,
            ckpt.uri,
            resume_epoch + 1,
        )
    else:
        model = build_model(args.learning_rate, steps, args.epochs, DEFAULT_RECIPE)
        history = []
    recorder = EpochRecorder(len(x_train), args.epochs, history)
    if resume_epoch >= args.epochs:
        log.info("checkpoint epoch %d already covers --epochs %d: exporting it", resume_epoch, args.epochs)
    else:
        model.fit(
            training_dataset(x_train, y_train, args.batch_size, DEFAULT_RECIPE, seed),
            epochs=args.epochs,
            initial_epoch=resume_epoch,
            shuffle=False,  # the dataset reshuffles every epoch itself
            validation_data=(to_input(x_val), to_target(y_val)) if len(x_val) else None,
            callbacks=[recorder, EpochCheckpoint(ckpt, config, recorder)],
            verbose=0,
        )
    started = time.perf_counter()
    if DEFAULT_RECIPE.recalibrate_batch_norm:
        recalibrate_batch_norm(model, x_train)
    return model, recorder.history, time.perf_counter() - started


def run(
    args: argparse.Namespace,
    data: tuple[np.ndarray, ...],
    ckpt: CheckpointStore,
    resume_epoch: int,
    config: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Train, export to ``args.model_uri`` (metrics.json last) and return the metrics."""
    gpus = use_gpus(os.environ)
    log.info("TensorFlow %s, Keras %s, devices: %s", tf.__version__, keras.__version__, ", ".join(gpus) or "CPU")
    _, _, x_test, y_test = data
    model, history, recalibration_s = train(args, data, ckpt, resume_epoch, config)
    train_images = len(data[0]) - args.validation_images

    with tempfile.TemporaryDirectory(prefix="tf-export-") as tmp:
        folder = Path(tmp)
        export_model(model, folder)
        probabilities = saved_model_predict(folder / SAVED_MODEL_DIR, x_test)
        keras_probabilities = model.predict(to_input(x_test[:256]), verbose=0)
        # Training time: every epoch's training part and the batch-norm recalibration.
        train_time = sum(h["train_time_s"] for h in history) + recalibration_s
        epochs_done = len(history)
        metrics = build_metrics(
            framework="tensorflow",
            y_true=y_test,
            y_pred=probabilities.argmax(axis=1),
            test_loss=cross_entropy(probabilities, y_test),
            epochs=epochs_done,
            images_per_sec=train_images * epochs_done / train_time if train_time else 0.0,
            wall_time_s=time.monotonic() - started,
            train_images=train_images,
            data_sha256=getattr(data, "sha256", None),  # what was read and verified (trainkit.data)
            validation_images=args.validation_images,
            recipe=DEFAULT_RECIPE.to_dict(),
            train_time_s=round(train_time, 3),
            resumed_from_epoch=resume_epoch,
            workers=1,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
            devices=gpus or ["CPU"],
            tensorflow_version=tf.__version__,
            keras_version=keras.__version__,
            model_input=input_spec(),
            export_max_abs_diff=float(np.abs(probabilities[:256] - keras_probabilities).max()),
        )
        store.write_json(str(folder / HISTORY_FILE), history)
        store.write_json(str(folder / METRICS_FILE), metrics)
        # A previous attempt's metrics.json would mark this half-written export as complete.
        store.remove(store.join(args.model_uri, METRICS_FILE))
        written = store.upload_dir(folder, args.model_uri, last=(METRICS_FILE,))
    if args.output_dir:
        store.write_json(store.join(args.output_dir, METRICS_FILE), metrics)
    log.info(
        "exported %d files to %s: test accuracy %.4f, loss %.4f, %.0f images/s",
        len(written),
        args.model_uri,
        metrics["test_accuracy"],
        metrics["test_loss"],
        metrics["images_per_sec"],
    )
    return metrics
