"""The Horovod training loop: shard, train, checkpoint, evaluate, and (rank 0) export.

Imported by train.py once the arguments and the data have been checked.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import exporting
import horovod
import horovod.mxnet as hvd
import mxnet as mx
import network
import numpy as np
import sharding
from checkpointing import load_checkpoint, save_checkpoint
from mxnet import autograd, gluon

from trainkit import store
from trainkit.checkpoints import CheckpointStore
from trainkit.contract import HISTORY, METRICS
from trainkit.metrics import build_metrics, progress_line, time_left_s

log = logging.getLogger("train")
#: The learning rate of epoch e (from 1) is the scaled rate x LR_DECAY**(e - 1). A constant rate
#: left the default run (5 epochs, 2 workers) near 0.90 test accuracy and noisy.
LR_DECAY = 0.6


class ShardError(ValueError):
    """The data is too small to give every worker a shard."""


def _global_sum(values: list[float], name: str) -> np.ndarray:
    """Sum of ``values`` over every rank (float64, so image counts stay exact)."""
    tensor = mx.nd.array(values, dtype="float64")
    return hvd.allreduce(tensor, op=hvd.Sum, name=name).asnumpy()


def _gather(values: np.ndarray, name: str) -> np.ndarray:
    """Concatenation of every rank's ``values`` in rank order (shards may differ in length)."""
    return hvd.allgather(mx.nd.array(values, dtype="int32"), name=name).asnumpy()


def device(local_rank: int) -> Any:
    """This process's GPU (one per local rank, as MPIJob slots and SageMaker MPI assign them), else the CPU."""
    return mx.gpu(local_rank) if mx.context.num_gpus() > 0 else mx.cpu()


def _train_epoch(
    net: Any,
    trainer: Any,
    loss_fn: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    rng: np.random.RandomState,
    ctx: Any,
) -> tuple[float, float, int, float]:
    """One pass over this rank's shard: (loss sum, correct, images, seconds)."""
    order = rng.permutation(len(x))
    loss_sum = mx.nd.zeros(1, ctx=ctx)
    correct = mx.nd.zeros(1, ctx=ctx)
    tic = time.perf_counter()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        data, label = mx.nd.array(x[idx], ctx=ctx), mx.nd.array(y[idx], ctx=ctx)
        with autograd.record():
            logits = net(data)
            loss = loss_fn(logits, label)
        loss.backward()
        trainer.step(len(idx))  # gradients are averaged over ranks inside step()
        loss_sum += loss.sum()
        correct += (logits.argmax(axis=1) == label).sum()
    loss_value, correct_value = float(loss_sum.asscalar()), float(correct.asscalar())
    return loss_value, correct_value, len(order), time.perf_counter() - tic


def _predict(
    net: Any, loss_fn: Any, x: np.ndarray, y: np.ndarray, batch_size: int, ctx: Any
) -> tuple[float, np.ndarray]:
    """Loss sum and predicted classes on this rank's test block (inference mode)."""
    loss_sum, preds = 0.0, []
    for start in range(0, len(x), batch_size):
        data = mx.nd.array(x[start : start + batch_size], ctx=ctx)
        label = mx.nd.array(y[start : start + batch_size], ctx=ctx)
        logits = net(data)
        loss_sum += float(loss_fn(logits, label).sum().asscalar())
        preds.append(logits.argmax(axis=1).asnumpy().astype(np.int32))
    return loss_sum, np.concatenate(preds) if preds else np.zeros(0, np.int32)


def _evaluate(
    net: Any, loss_fn: Any, x: np.ndarray, y: np.ndarray, batch_size: int, ctx: Any, tag: str
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Test loss and accuracy over all ranks' blocks, with every label and prediction gathered."""
    loss_sum, preds = _predict(net, loss_fn, x, y, batch_size, ctx)
    y_pred = _gather(preds, f"{tag}.pred")
    y_true = _gather(y.astype(np.int32), f"{tag}.true")
    total_loss = _global_sum([loss_sum], f"{tag}.loss")[0]
    return total_loss / len(y_true), float((y_true == y_pred).mean()), y_true, y_pred


def _export(
    args: argparse.Namespace, net: Any, x_check: np.ndarray, metrics: dict, history: list[dict], ctx: Any
) -> list[str]:
    """Rank 0: write the model files to a local folder, then copy it to the model URI."""
    with tempfile.TemporaryDirectory(prefix="mx-export-") as tmp:
        folder = Path(tmp)
        files = exporting.export_symbol(net, folder)
        if args.onnx:
            files.append(exporting.export_onnx(folder))
            metrics["onnx_max_abs_diff"] = exporting.onnx_max_abs_diff(folder, net, x_check, ctx)
        metrics["model_files"] = sorted(files)
        (folder / HISTORY).write_text(json.dumps(history, indent=2))
        (folder / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        # metrics.json goes last: its presence marks a complete model version.
        return store.upload_dir(folder, args.model_uri, last=(METRICS,))


class Shards(NamedTuple):
    """This rank's training shard and test block, as network inputs."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def shard_data(data: tuple[np.ndarray, ...], rank: int, size: int, seed: int) -> Shards:
    x_train, y_train, x_test, y_test = data
    try:
        shard = sharding.train_shard(len(x_train), rank, size)
    except ValueError as exc:
        raise ShardError(str(exc)) from exc
    # One permutation, the same on every rank, so shards mix all classes whatever the file order.
    positions = np.random.RandomState(seed).permutation(len(x_train))[shard.start : shard.stop]
    block = sharding.eval_shard(len(x_test), rank, size)
    return Shards(
        network.to_input(x_train[positions]),
        y_train[positions].astype(np.float32),
        network.to_input(x_test[block.start : block.stop]),
        y_test[block.start : block.stop],
    )


def _resume(
    checkpoints: CheckpointStore, net: Any, trainer: Any, learning_rate: float, ctx: Any
) -> tuple[int, list[dict]]:
    """Load the last finished epoch, if any: (that epoch or 0, the history so far on rank 0)."""
    rank, size = hvd.rank(), hvd.size()
    latest = checkpoints.latest_epoch() if rank == 0 else 0
    # Rank 0 decides, so every rank resumes from the same epoch even on an eventually consistent store.
    done = int(hvd.broadcast(mx.nd.array([latest]), root_rank=0, name="resume.epoch").asscalar())
    history = checkpoints.history() if rank == 0 else []
    if done:
        load_checkpoint(checkpoints, done, net, trainer, learning_rate, ctx)
        log.info("rank %d/%d: resuming at epoch %d from checkpoint epoch %d", rank, size, done + 1, done)
    return done, history


def _fit_epoch(
    epoch: int, net: Any, trainer: Any, loss_fn: Any, shards: Shards, args: argparse.Namespace, ctx: Any
) -> dict:
    """Train one epoch on every rank and evaluate; the epoch's record (the same on every rank)."""
    size = hvd.size()
    rng = np.random.RandomState(args.seed * 10007 + epoch * 101 + hvd.rank())
    loss_sum, correct, images, seconds = _train_epoch(
        net, trainer, loss_fn, shards.x_train, shards.y_train, args.batch_size, rng, ctx
    )
    totals = _global_sum([loss_sum, correct, images, images / seconds], f"epoch{epoch}.train")
    # Batch-norm statistics are per rank: take rank 0's, the ones checkpointed and exported.
    hvd.broadcast_parameters(net.collect_params(), root_rank=0, prefix=f"epoch{epoch}.")
    test_loss, test_acc, _, _ = _evaluate(
        net, loss_fn, shards.x_test, shards.y_test, args.batch_size, ctx, f"epoch{epoch}.eval"
    )
    return {
        "epoch": epoch,
        "train_loss": totals[0] / totals[2],
        "train_accuracy": totals[1] / totals[2],
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "images_per_sec": totals[3],
        "images_per_sec_per_worker": totals[3] / size,
        "epoch_time_s": seconds,
        "workers": size,
    }


def run(args: argparse.Namespace, data: tuple[np.ndarray, ...], started: float) -> dict | None:
    """Train on this rank's shard; rank 0 returns the metrics it exported, other ranks None.

    ``started`` is the ``time.perf_counter()`` of the process start, for ``wall_time_s``.
    """
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    shards = shard_data(data, rank, size, args.seed)
    ctx = device(hvd.local_rank())
    log.info(
        "rank %d/%d: shard of %d images (test block of %d) on %s, %s CPU threads",
        rank,
        size,
        len(shards.x_train),
        len(shards.x_test),
        ctx,
        os.environ.get("OMP_NUM_THREADS", "default"),
    )
    mx.random.seed(args.seed)
    net = network.build_network()
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
    net.hybridize()
    learning_rate = sharding.scaled_learning_rate(args.learning_rate, size)
    trainer = hvd.DistributedTrainer(net.collect_params(), "adam", {"learning_rate": learning_rate})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    checkpoints = CheckpointStore(args.checkpoint_uri)
    done, history = _resume(checkpoints, net, trainer, learning_rate, ctx)
    hvd.broadcast_parameters(net.collect_params(), root_rank=0, prefix="init.")

    speeds = []
    for epoch in range(done + 1, args.epochs + 1):
        # From the absolute epoch number, so a resumed run continues the same curve.
        trainer.set_learning_rate(learning_rate * LR_DECAY ** (epoch - 1))
        record = _fit_epoch(epoch, net, trainer, loss_fn, shards, args, ctx)
        record["learning_rate"] = trainer.learning_rate
        speeds.append((len(shards.x_train) * size, record["epoch_time_s"]))
        if rank == 0:
            history.append(record)
            save_checkpoint(checkpoints, epoch, net, trainer, history)
            epoch_times = [t for _, t in speeds]
            log.info(
                "%s (%d workers)",
                progress_line(
                    epoch,
                    args.epochs,
                    record["train_loss"],
                    record["train_accuracy"],
                    record["test_loss"],
                    record["test_accuracy"],
                    record["images_per_sec"],
                    record["epoch_time_s"],
                    time_left_s(epoch_times, epoch - done, args.epochs - done),
                ),
                size,
            )

    test_loss, test_acc, y_true, y_pred = _evaluate(
        net, loss_fn, shards.x_test, shards.y_test, args.batch_size, ctx, "final"
    )
    # Images/s of this run: all ranks' images over this rank's training time, averaged over ranks.
    own = sum(n for n, _ in speeds) / sum(t for _, t in speeds) if speeds else 0.0
    speed = _global_sum([own], "final.speed")[0] / size
    if rank != 0:
        log.info("rank %d/%d: done; rank 0 exports the model", rank, size)
        return None
    if not speeds and history:  # every epoch came from checkpoints: report their speed
        speed = history[-1]["images_per_sec"]
    last = history[-1] if history else {}
    metrics = build_metrics(
        framework="mxnet",
        y_true=y_true,
        y_pred=y_pred,
        test_loss=test_loss,
        epochs=max(args.epochs, done),
        images_per_sec=speed,
        wall_time_s=time.perf_counter() - started,
        train_images=len(shards.x_train) * size,
        data_sha256=getattr(data, "sha256", None),  # what was read and verified (trainkit.data)
        workers=size,
        images_per_sec_per_worker=speed / size,
        batch_size_per_worker=args.batch_size,
        global_batch_size=args.batch_size * size,
        learning_rate=learning_rate,
        base_learning_rate=args.learning_rate,
        resumed_from_epoch=done,
        epochs_run=max(0, args.epochs - done),
        train_loss=last.get("train_loss"),
        train_accuracy=last.get("train_accuracy"),
        model_input=network.input_spec(),
        written_by_rank=rank,
        horovod={"version": horovod.__version__, "controller": "gloo" if hvd.gloo_enabled() else "mpi"},
        mxnet_version=mx.__version__,
    )
    files = _export(args, net, shards.x_test[:256], metrics, history, ctx)
    log.info("rank 0/%d: test accuracy %.4f; wrote %s to %s", size, test_acc, ", ".join(files), args.model_uri)
    return metrics
