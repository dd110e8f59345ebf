"""Accuracy in the same training time: today's recipe and candidates side by side, on one machine.

Every run trains through the image's own code (``images/tf-fashion-mnist``: ``network.py``'s model,
``pipeline.py``'s input pipeline) on the real Fashion-MNIST and prints, per seed: images/s, seconds
of ``model.fit``, accuracy on a seeded validation split of the training images (what candidates are
chosen on) and test accuracy (reported, never used to choose). ``--validation-images 0`` trains on
all 60,000 images as ``make run`` does (the confirmation of a recipe already chosen).

The machine is shared, so a candidate's time is judged against the reference trained in the same
run, seed by seed, candidates interleaved: its fit seconds on 60,000 images, converted to the quiet
machine (``quiet s = fit s x reference images/s now / reference images/s quiet``), must stay within
``--budget-s`` (90 s). The bench also measures a matmul peak (FP32 and BF16) at the start and prints
each run's achieved FLOP/s against it (training FLOPs per image: 3x the forward pass's, counted
from the network's convolutions and dense layers).

    python bench/tf_budget.py [--seeds 3] [--only reference candidate ...] [--validation-images 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from network import DEFAULT_RECIPE, Recipe  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
#: Today's recipe before this bench (5 epochs of batch 128, float32, no augmentation) and its speed
#: on the quiet machine (2026-12-07: ~7,400 images/s, 40 s of fit for 5 x 60,000 images, 0.9344).
REFERENCE_QUIET_IMAGES_PER_S = 7400.0
FULL_TRAINING_IMAGES = 60000
LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Candidate:
    recipe: Recipe
    epochs: int = 5
    batch_size: int = 128
    #: Feed ``model.fit`` the arrays (the image's input before ``pipeline.py``), not the dataset.
    arrays: bool = False

    def replace(self, **changes: Any) -> Candidate:
        recipe = {k: changes.pop(k) for k in list(changes) if k in Recipe.__dataclass_fields__}
        return dataclasses.replace(self, recipe=self.recipe.replace(**recipe), **changes)


#: Today's recipe before this bench, spelled out: 5 epochs of batch 128, float32, no augmentation,
#: the arrays fed to ``fit``.
REFERENCE = Candidate(Recipe(peak_factor=3.0, precision="float32", flip=False, shift=0), 5, 128, arrays=True)


def candidates() -> dict[str, Candidate]:
    """name -> candidate; ``reference`` is today's recipe, ``default`` the image's current default."""
    bf16 = REFERENCE.replace(precision="mixed_bfloat16", batch_size=256, peak_factor=4.0, arrays=False)
    return {
        "reference": REFERENCE,
        "default": Candidate(DEFAULT_RECIPE),
        "fp32-10-epochs": REFERENCE.replace(epochs=10),
        "bf16-b256": bf16,
        "bf16-b256-18-epochs": bf16.replace(epochs=18),
        "bf16-b256-18-epochs-flip-shift": bf16.replace(epochs=18, flip=True, shift=2),
        "bf16-b256-18-epochs-flip": bf16.replace(epochs=18, flip=True),
        "bf16-b256-18-epochs-shift": bf16.replace(epochs=18, shift=2),
        "bf16-b256-14-epochs-flip-shift-48-96": bf16.replace(epochs=14, flip=True, shift=2, widths=(48, 96)),
        "bf16-b512-20-epochs-flip-shift": bf16.replace(batch_size=512, peak_factor=6.0, epochs=20, flip=True, shift=2),
        # Sized to the budget on the quiet 2026-12-07 machine by each one's images/s against the reference's.
        "bf16-b256-24-epochs-flip-shift": bf16.replace(epochs=24, flip=True, shift=2),
        "bf16-b256-13-epochs-flip-shift-64-128": bf16.replace(epochs=13, flip=True, shift=2, widths=(64, 128)),
        "bf16-b256-20-epochs-flip-shift-32-64-128": bf16.replace(epochs=20, flip=True, shift=2, widths=(32, 64, 128)),
        "bf16-b256-8-epochs-flip-shift-96-192": bf16.replace(epochs=8, flip=True, shift=2, widths=(96, 192)),
    }


def training_flops_per_image(model: Any) -> float:
    """Multiply-adds of the forward pass x 2 FLOPs x 3 (forward, gradients of inputs and of weights)."""
    import keras

    flops = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, out = layer.output.shape
            kernel = layer.kernel.shape
            flops += 2.0 * height * width * out * kernel[0] * kernel[1] * kernel[2]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return 3 * flops


def matmul_peak(dtype: str, size: int = 2048, seconds: float = 3.0) -> float:
    """FLOP/s of back-to-back ``size`` x ``size`` matmuls in TensorFlow on this machine (best of a few seconds)."""
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)
    step = tf.function(lambda m: tf.matmul(m, m))
    step(a).numpy()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        tic = time.perf_counter()
        for _ in range(4):
            out = step(a)
        out.numpy()
        best = max(best, 4 * 2.0 * size**3 / (time.perf_counter() - tic))
    return best


def train(
    candidate: Candidate,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    evaluate: dict[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """One run: the image's model and pipeline, all epochs in one ``fit`` call, as the image does."""
    import keras
    from network import build_model, recalibrate_batch_norm, steps_per_epoch, to_input, to_target
    from pipeline import training_dataset

    recipe, epochs, batch = candidate.recipe, candidate.epochs, candidate.batch_size
    keras.utils.set_random_seed(seed)
    model = build_model(LEARNING_RATE, steps_per_epoch(len(x), batch), epochs, recipe)
    if candidate.arrays:
        inputs = {"x": to_input(x), "y": to_target(y), "batch_size": batch}
    else:
        inputs = {"x": training_dataset(x, y, batch, recipe, seed)}
    tic = time.perf_counter()
    model.fit(**inputs, epochs=epochs, verbose=0, shuffle=candidate.arrays)
    fit_s = time.perf_counter() - tic
    recalibrate_batch_norm(model, x)
    result = {"fit_s": round(fit_s, 2), "images_per_sec": round(len(x) * epochs / fit_s, 1)}
    for name, (images, labels) in evaluate.items():
        pixels = to_input(images)
        probabilities = model.predict(pixels, batch_size=1000, verbose=0)
        result[f"{name}_accuracy"] = round(float((probabilities.argmax(axis=1) == labels).mean()), 4)
        # Test-time flips: the mean of each image's and its mirror image's probabilities (reported only).
        mirrored = model.predict(pixels[:, :, ::-1], batch_size=1000, verbose=0)
        result[f"{name}_flip_accuracy"] = round(float(((probabilities + mirrored).argmax(axis=1) == labels).mean()), 4)
    result["flops_per_image"] = training_flops_per_image(model)
    result["load_average"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-uri", default=DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42, help="seeds run from this one up")
    parser.add_argument("--only", nargs="*", help="candidate names (default: all); the reference always runs")
    parser.add_argument("--validation-images", type=int, default=10000, help="0: train on all images")
    parser.add_argument("--budget-s", type=float, default=90.0, help="quiet-machine seconds of fit on 60,000 images")
    parser.add_argument("--limit-train", type=int, default=None, help="use the first N training images (smoke runs)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    known = candidates()
    unknown = set(args.only or ()) - set(known)
    if unknown:
        parser.error(f"unknown candidate(s) {sorted(unknown)}; known: {', '.join(known)}")
    chosen = {n: r for n, r in known.items() if n == "reference" or not args.only or n in args.only}

    from trainkit.data import load_fashion_mnist

    x, y, x_test, y_test = load_fashion_mnist(args.data_uri, args.limit_train)
    order = np.random.RandomState(7).permutation(len(x))
    held, kept = order[: args.validation_images], order[args.validation_images :]
    x_train, y_train = x[kept], y[kept]
    evaluate = {"test": (x_test, y_test)}
    if args.validation_images:
        evaluate = {"validation": (x[held], y[held]), **evaluate}
    print(f"start {time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {os.getloadavg()}", flush=True)
    peaks = {dtype: matmul_peak(dtype) for dtype in ("float32", "bfloat16")}
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()), flush=True)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in chosen}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, candidate in chosen.items():
            # The peak of this moment: on a shared machine the one of the start says little an hour later.
            dtype = "bfloat16" if candidate.recipe.precision == "mixed_bfloat16" else "float32"
            peak = matmul_peak(dtype, seconds=1.0)
            run = train(candidate, x_train, y_train, seed, evaluate)
            run["matmul_peak"] = peak
            runs[name].append(run)
            achieved = run["flops_per_image"] * run["images_per_sec"]
            print(
                f"{name:<40} seed {seed}: {run['images_per_sec']:7.0f} images/s, fit {run['fit_s']:6.1f} s, "
                + ", ".join(
                    f"{k} {run[f'{k}_accuracy']:.4f} (flip-averaged {run[f'{k}_flip_accuracy']:.4f})" for k in evaluate
                )
                + f", {achieved / 1e9:.1f} GFLOP/s ({achieved / peak:.0%} of the matmul peak)"
                + f", load {run['load_average']}",
                flush=True,
            )
    summary = {}
    for name, candidate in chosen.items():
        rows = runs[name]
        # Seed by seed against the reference of the same seed: the load moves during a run.
        quiet = [
            r["fit_s"] * FULL_TRAINING_IMAGES / len(x_train) * ref["images_per_sec"] / REFERENCE_QUIET_IMAGES_PER_S
            for r, ref in zip(rows, runs["reference"], strict=True)
        ]
        summary[name] = {
            "recipe": candidate.recipe.to_dict(),
            "epochs": candidate.epochs,
            "batch_size": candidate.batch_size,
            "runs": rows,
            "median_images_per_sec": statistics.median(r["images_per_sec"] for r in rows),
            "speed_vs_reference": statistics.median(
                r["images_per_sec"] / ref["images_per_sec"] for r, ref in zip(rows, runs["reference"], strict=True)
            ),
            "quiet_fit_s_60000": round(statistics.median(quiet), 1),
            **{f"median_{k}_accuracy": statistics.median(r[f"{k}_accuracy"] for r in rows) for k in evaluate},
            **{f"median_{k}_flip_accuracy": statistics.median(r[f"{k}_flip_accuracy"] for r in rows) for k in evaluate},
        }
    print(
        f"\n{'candidate':<40} {'x ref speed':>11} {'quiet fit s':>11} "
        + " ".join(f"{k + ' acc':>15} {'flip-averaged':>13}" for k in evaluate)
        + f"   (median of {args.seeds} seeds, {len(x_train)} training images, budget {args.budget_s:.0f} s)"
    )
    for name, row in summary.items():
        print(
            f"{name:<40} {row['speed_vs_reference']:11.2f} {row['quiet_fit_s_60000']:11.1f} "
            + " ".join(
                f"{row[f'median_{k}_accuracy']:15.4f} {row[f'median_{k}_flip_accuracy']:13.4f}" for k in evaluate
            )
            + ("" if row["quiet_fit_s_60000"] <= args.budget_s else "   over budget")
        )
    print(f"end {time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"peaks": peaks, "candidates": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
