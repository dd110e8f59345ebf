"""Levers of the TensorFlow image's time to accuracy, measured on a validation split.

The network and its recipe are the image's own (``images/tf-fashion-mnist/network.py``, plain
Keras 3), so this runs on any Keras backend: TensorFlow on the CPU, JAX on a GPU machine
(``KERAS_BACKEND=jax``). Every lever run trains on the training images minus a held-out
validation split (a seeded random ``--validation-images`` of them) and reports the validation
accuracy: the test set is never looked at to choose. Modes:

* ``levers``: the default recipe, the former one, and the default with one lever changed at a
  time; validation accuracy, training seconds, images/s per run (``--seeds`` runs each).
* ``throughput``: images/s of each lever's train step alone, a few dozen steps, variants
  interleaved (``--rounds``) so that other work on a shared machine hits them alike.
* ``gpu``: on the full training set, the epoch at which the default recipe first reaches
  ``--target`` test accuracy and the training seconds until then (the test set is only
  reported, once per epoch, never used to choose), and what a larger network reaches in
  ``--budget-s`` seconds of training.

Every lever run also reports test-time flip averaging on the validation split, and ``--set
field=value ...`` changes the recipe of every lever run (``--set dropout=0.1 widths=24,64``).

    python bench/tf_recipe.py levers [--epochs 5] [--seeds 2] [--only default dropout-0.25] [--set ...]
    KERAS_BACKEND=jax python bench/tf_recipe.py gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "images" / "tf-fashion-mnist"), str(ROOT / "images" / "common")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from network import DEFAULT_RECIPE, FORMER_RECIPE, Recipe  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
#: Learning rate and batch size the DAG passes by default (plugins/eksml/params.py).
LEARNING_RATE = 1e-3
BATCH_SIZE = 128
#: A larger network for a GPU's time budget: two double-conv blocks, a wider head (3.5 M parameters).
#: No in-graph augmentation: with a RandomTranslation layer, a (64, 128, 256) variant did not finish
#: its first epoch in 165 s on JAX.
LARGE_RECIPE = DEFAULT_RECIPE.replace(widths=(64, 128), convs_per_block=2, dense_units=512, dropout=0.4)
#: Levers trained with horizontal flips in the input pipeline (half the images of every epoch,
#: numpy, outside the model) and scored with and without flip test-time averaging.
PIPELINE_FLIPS = {"pipeline-flips"}


def levers() -> dict[str, tuple[Recipe, float, int]]:
    """name -> (recipe, peak learning rate, batch size): the default and one change at a time."""
    d = DEFAULT_RECIPE
    return {
        "default": (d, LEARNING_RATE, BATCH_SIZE),
        "former": (FORMER_RECIPE, LEARNING_RATE, BATCH_SIZE),
        "former-no-xla": (FORMER_RECIPE.replace(xla=False), LEARNING_RATE, BATCH_SIZE),
        "step-decay": (d.replace(schedule="step"), LEARNING_RATE, BATCH_SIZE),
        "peak-2x": (d.replace(peak_factor=2.0), LEARNING_RATE, BATCH_SIZE),
        "peak-1x": (d.replace(peak_factor=1.0), LEARNING_RATE, BATCH_SIZE),
        "widths-24-64": (d.replace(widths=(24, 64)), LEARNING_RATE, BATCH_SIZE),
        "batch-256-peak-4x": (d.replace(peak_factor=4.0), LEARNING_RATE, 256),
        "pipeline-flips": (d, LEARNING_RATE, BATCH_SIZE),
        "no-label-smoothing": (d.replace(label_smoothing=0.0), LEARNING_RATE, BATCH_SIZE),
        "flip": (d.replace(flip=True), LEARNING_RATE, BATCH_SIZE),
        "shift": (d.replace(shift=2), LEARNING_RATE, BATCH_SIZE),
        "bfloat16": (d.replace(precision="mixed_bfloat16"), LEARNING_RATE, BATCH_SIZE),
        "lr-2e-3": (d, 2e-3, BATCH_SIZE),
        "batch-256-lr-2e-3": (d, 2e-3, 256),
        "wider-48-96": (d.replace(widths=(48, 96)), LEARNING_RATE, BATCH_SIZE),
        "three-blocks": (d.replace(widths=(32, 64, 128)), LEARNING_RATE, BATCH_SIZE),
        "double-conv": (d.replace(convs_per_block=2), LEARNING_RATE, BATCH_SIZE),
        "xla": (d.replace(xla=True), LEARNING_RATE, BATCH_SIZE),
        "norm-before-pool": (d.replace(pool_first=False), LEARNING_RATE, BATCH_SIZE),
        "lagging-norm-statistics": (d.replace(recalibrate_batch_norm=False), LEARNING_RATE, BATCH_SIZE),
        "one-step-per-call": (d.replace(steps_per_execution=1), LEARNING_RATE, BATCH_SIZE),
        "batch-64": (d, LEARNING_RATE, 64),
        "ema": (d.replace(ema=0.99), LEARNING_RATE, BATCH_SIZE),
        "weight-decay": (d.replace(weight_decay=0.05), LEARNING_RATE, BATCH_SIZE),
        "dropout-0.25": (d.replace(dropout=0.25), LEARNING_RATE, BATCH_SIZE),
        "peak-4x": (d.replace(peak_factor=4.0), LEARNING_RATE, BATCH_SIZE),
        "widths-48-64": (d.replace(widths=(48, 64)), LEARNING_RATE, BATCH_SIZE),
        "widths-32-96": (d.replace(widths=(32, 96)), LEARNING_RATE, BATCH_SIZE),
        "label-smoothing-0.15": (d.replace(label_smoothing=0.15), LEARNING_RATE, BATCH_SIZE),
    }


def with_changes(recipe: Recipe, changes: list[str] | None) -> Recipe:
    """``recipe`` with ``field=value`` changes (``--set dropout=0.1 widths=24,64``) applied."""
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    updates: dict[str, Any] = {}
    for change in changes or ():
        name, _, text = change.partition("=")
        if name not in fields:
            raise SystemExit(f"--set {change}: no recipe field {name!r} (fields: {', '.join(fields)})")
        current = getattr(recipe, name)
        if isinstance(current, tuple):
            updates[name] = tuple(int(v) for v in text.split(","))
        elif isinstance(current, bool):
            updates[name] = text.lower() in ("1", "true", "yes")
        else:
            updates[name] = type(current)(text)
    return recipe.replace(**updates)


def backend_recipe(recipe: Recipe) -> Recipe:
    """JAX runs eagerly without jit; XLA is its only compiled path, so it is always on there."""
    import keras

    return recipe.replace(xla=True) if keras.backend.backend() == "jax" else recipe


def split(x: np.ndarray, y: np.ndarray, validation: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Training images minus a seeded random validation split, and that split."""
    order = np.random.RandomState(seed).permutation(len(x))
    train, val = order[validation:], order[:validation]
    return x[train], y[train], x[val], y[val]


def fit(
    recipe: Recipe,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    evaluate_on: tuple[np.ndarray, np.ndarray] | None = None,
    target: float | None = None,
    flips: bool = False,
    flip_averaged: bool = False,
    one_call: bool = False,
) -> dict[str, Any]:
    """Train; training seconds exclude evaluation. With ``evaluate_on``, accuracy after the last epoch
    (every epoch with ``target``), and with ``flips`` or ``flip_averaged`` also averaged over each
    image and its mirror image. ``one_call``: the epochs run in one ``fit`` call, as in the image
    (an EMA of the weights replaces them at the end of each call); needs no per-epoch work."""
    import keras
    from network import build_model, recalibrate_batch_norm, steps_per_epoch, to_input, to_target

    keras.utils.set_random_seed(seed)
    model = build_model(learning_rate, steps_per_epoch(len(x), batch_size), epochs, backend_recipe(recipe))
    xs, ys = to_input(x), to_target(y)
    per_epoch, train_s, first_epoch_s = [], 0.0, None
    rng = np.random.default_rng(seed)
    if one_call and (flips or target is not None):
        raise ValueError("one_call leaves no room for per-epoch flips or scoring")
    for epoch in range(1 if one_call else epochs):
        if flips:
            xs = to_input(np.where((rng.random(len(x)) < 0.5)[:, None, None], x[:, :, ::-1], x))
        tic = time.perf_counter()
        last = epochs if one_call else epoch + 1
        if recipe.flip or recipe.shift:  # the image's input pipeline augments
            from pipeline import training_dataset

            inputs = {"x": training_dataset(x, y, batch_size, recipe, seed + epoch)}
        else:
            inputs = {"x": xs, "y": ys, "batch_size": batch_size, "shuffle": True}
        model.fit(**inputs, epochs=last, initial_epoch=epoch, verbose=0)
        if recipe.recalibrate_batch_norm:
            recalibrate_batch_norm(model, x)
        seconds = time.perf_counter() - tic
        first_epoch_s = seconds if first_epoch_s is None else first_epoch_s
        train_s += seconds
        if evaluate_on is not None and (target is not None or last == epochs):
            accuracy = accuracy_of(model, *evaluate_on)
            per_epoch.append({"epoch": last, "train_s": round(train_s, 2), "accuracy": round(accuracy, 4)})
            if flips or flip_averaged:
                per_epoch[-1]["flip_averaged_accuracy"] = round(accuracy_of(model, *evaluate_on, flip_average=True), 4)
    return {
        "train_s": round(train_s, 2),
        "first_epoch_s": round(first_epoch_s or 0.0, 2),
        "images_per_sec": round(len(x) * epochs / train_s, 1),
        "per_epoch": per_epoch,
        "accuracy": per_epoch[-1]["accuracy"] if per_epoch else None,
        "params": model.count_params(),
    }


def accuracy_of(model: Any, x: np.ndarray, y: np.ndarray, flip_average: bool = False) -> float:
    from network import to_input

    probabilities = model.predict(to_input(x), batch_size=1000, verbose=0)
    if flip_average:
        probabilities = probabilities + model.predict(to_input(x[:, :, ::-1]), batch_size=1000, verbose=0)
    return float((probabilities.argmax(axis=1) == y).mean())


def load(args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    from trainkit.data import load_fashion_mnist

    return load_fashion_mnist(args.data_uri, args.limit_train, args.limit_test)


def conditions() -> dict[str, Any]:
    import keras

    return {
        "backend": keras.backend.backend(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_levers(args: argparse.Namespace) -> dict[str, Any]:
    x, y, _, _ = load(args)
    x_tr, y_tr, x_val, y_val = split(x, y, args.validation_images)
    table = {}
    for name, (recipe, lr, batch) in levers().items():
        recipe = with_changes(recipe, args.set)
        if args.only and name not in args.only:
            continue
        runs = []
        for seed in range(args.seeds):
            run = fit(
                recipe,
                lr,
                batch,
                args.epochs,
                x_tr,
                y_tr,
                seed=42 + seed,
                evaluate_on=(x_val, y_val),
                flips=name in PIPELINE_FLIPS,
                flip_averaged=True,
                one_call=name not in PIPELINE_FLIPS,
            )
            run["load_average"] = round(os.getloadavg()[0], 2)
            runs.append(run)
            averaged = run["per_epoch"][-1].get("flip_averaged_accuracy")
            print(
                f"{name:<20} seed {seed}: validation accuracy {run['accuracy']:.4f}  training {run['train_s']:7.1f} s"
                f"  {run['images_per_sec']:7.0f} images/s  load {run['load_average']}"
                + (f"  flip-averaged {averaged:.4f}" if averaged is not None else ""),
                flush=True,
            )
        table[name] = {
            "recipe": recipe.to_dict(),
            "learning_rate": lr,
            "batch_size": batch,
            "runs": runs,
            "mean_validation_accuracy": round(statistics.mean(r["accuracy"] for r in runs), 4),
        }
    print(
        f"\n{'lever':<20} {'val acc':>8} {'train s':>8} {'images/s':>9}   ({args.epochs} epochs, "
        f"{len(x_tr)} training / {len(x_val)} validation images, mean of {args.seeds})"
    )
    for name, row in table.items():
        runs = row["runs"]
        print(
            f"{name:<20} {row['mean_validation_accuracy']:8.4f} {statistics.mean(r['train_s'] for r in runs):8.1f} "
            f"{statistics.mean(r['images_per_sec'] for r in runs):9.0f}"
        )
    return {"mode": "levers", "epochs": args.epochs, "validation_images": len(x_val), "levers": table}


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of each lever's training step, variants interleaved round by round."""
    import keras
    from network import build_model, to_input, to_target

    x, y, _, _ = load(args)
    chosen = {
        n: (with_changes(r, args.set), lr, b) for n, (r, lr, b) in levers().items() if not args.only or n in args.only
    }
    speeds: dict[str, list[float]] = {n: [] for n in chosen}
    models = {}
    for _ in range(args.rounds):
        for name, (recipe, lr, batch) in chosen.items():
            n = batch * args.steps
            xs, ys = to_input(x[:n]), to_target(y[:n])
            if name not in models:
                keras.utils.set_random_seed(1)
                models[name] = build_model(lr, args.steps, 100, backend_recipe(recipe))
                models[name].fit(xs[: batch * 4], ys[: batch * 4], batch_size=batch, epochs=1, verbose=0)
            tic = time.perf_counter()
            models[name].fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=True)
            speeds[name].append(n / (time.perf_counter() - tic))
            print(f"{name:<20} {speeds[name][-1]:7.0f} images/s  load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"\n{'lever':<20} {'images/s (median)':>18}   ({args.rounds} rounds of {args.steps} steps)")
    for name, values in speeds.items():
        print(f"{name:<20} {statistics.median(values):18.0f}")
    return {
        "mode": "throughput",
        "steps": args.steps,
        "images_per_sec": {n: [round(v, 1) for v in vs] for n, vs in speeds.items()},
    }


def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """Time to ``--target`` test accuracy of the default recipe; a larger network's accuracy in a budget."""
    x, y, x_test, y_test = load(args)
    result: dict[str, Any] = {"mode": "gpu", "target": args.target}
    # Batch 512 with a peak of 0.008 (the base rate times the recipe's 3x peak): the rate scaled with the batch.
    for name, batch, lr in (("default", BATCH_SIZE, LEARNING_RATE), ("default-batch-512", 512, 0.008 / 3)):
        run = fit(
            DEFAULT_RECIPE, lr, batch, args.epochs, x, y, seed=42, evaluate_on=(x_test, y_test), target=args.target
        )
        reached = next((e for e in run["per_epoch"] if e["accuracy"] >= args.target), None)
        run["time_to_target_s"] = reached and reached["train_s"]
        run["epoch_of_target"] = reached and reached["epoch"]
        result[name] = run
        print(
            f"{name}: {run['images_per_sec']:.0f} images/s (first epoch {run['first_epoch_s']:.1f} s, "
            f"compilation included); test accuracy by epoch "
            + ", ".join(f"{e['epoch']}: {e['accuracy']:.4f} @ {e['train_s']:.1f} s" for e in run["per_epoch"])
            + f"; {args.target} reached: "
            + (f"epoch {reached['epoch']}, {reached['train_s']:.1f} s of training" if reached else "no"),
            flush=True,
        )
    # The larger network: measure one epoch's speed, then train as many epochs as fit the budget.
    probe = fit(LARGE_RECIPE, LEARNING_RATE, 256, 2, x[:20000], y[:20000], seed=1)
    steady = 20000 / max(1e-6, probe["train_s"] - probe["first_epoch_s"])  # the second epoch: compiled
    epochs = max(1, math.floor(args.budget_s * steady / len(x)))
    run = fit(LARGE_RECIPE, LEARNING_RATE, 256, epochs, x, y, seed=42, evaluate_on=(x_test, y_test), flips=True)
    result["large"] = {"recipe": LARGE_RECIPE.to_dict(), "epochs": epochs, **run}
    print(
        f"large ({run['params']} parameters): {epochs} epochs, {run['train_s']:.1f} s of training, "
        f"{run['images_per_sec']:.0f} images/s, test accuracy {run['accuracy']:.4f}",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["levers", "throughput", "gpu"])
    parser.add_argument("--data-uri", default=DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--validation-images", type=int, default=10000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="lever names to run (default: all)")
    parser.add_argument("--set", nargs="*", help="recipe changes applied to every lever run: field=value ...")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: interleaved rounds")
    parser.add_argument("--steps", type=int, default=40, help="throughput: steps per measurement")
    parser.add_argument("--target", type=float, default=0.935, help="gpu: test accuracy to reach")
    parser.add_argument("--budget-s", type=float, default=60.0, help="gpu: training seconds of the larger network")
    parser.add_argument("--limit-train", type=int, default=None, help="use the first N training images (smoke runs)")
    parser.add_argument("--limit-test", type=int, default=None, help="use the first N test images (smoke runs)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - set(levers())
    if unknown:
        parser.error(f"unknown lever(s) {sorted(unknown)}; known: {', '.join(levers())}")
    before = conditions()
    print(f"conditions: {json.dumps(before)}", flush=True)
    result = {"run_levers": run_levers, "run_throughput": run_throughput, "run_gpu": run_gpu}[f"run_{args.mode}"](args)
    result["conditions_before"], result["conditions_after"] = before, conditions()
    print(f"conditions after: {json.dumps(result['conditions_after'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
