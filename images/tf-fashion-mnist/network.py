"""The Keras CNN trained on Fashion-MNIST, its training recipe, and the input its exported model takes.

The model normalises its own input, so every client (the inference server, the evaluation
step, a user's script) feeds raw pixels exactly as the IDX files hold them, as float32 of
shape (N, 28, 28) in 0..255, and no client can forget or repeat the scaling. The serving
signature ``serving_default`` returns softmax probabilities under ``output_0`` (the name Keras 3
gives a single output on export). metrics.json records this as ``model_input``.

Everything here is plain Keras 3 (no TensorFlow import), so ``bench/tf_recipe.py`` trains the
very same network on any Keras backend (JAX on a GPU machine, for instance).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from trainkit.contract import NUM_CLASSES

INPUT_NAME = "pixels"
INPUT_SHAPE = (28, 28)
SIGNATURE = "serving_default"
OUTPUT_NAME = "output_0"
#: Training images whose statistics become the batch norms' moving statistics after training.
RECALIBRATION_IMAGES = 4096
#: Batch-norm momentum: Keras' 0.99 leaves the moving statistics near their initial values after
#: the few dozen steps of a small run, and the exported model (inference mode) then mispredicts.
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The levers of time to accuracy. The defaults were chosen on a validation split carved from the
    training images (``bench/tf_recipe.py``), never on the test set; docs/performance.md has each lever's effect.
    """

    #: Filters of each conv block (each block: ``convs_per_block`` conv + batch norm + ReLU, then 2x2 max-pool).
    widths: tuple[int, ...] = (32, 64)
    convs_per_block: int = 1
    #: Max-pool each block's last conv output before its batch norm and ReLU, so that they run on a
    #: quarter of the pixels (Keras 3's batch norm on TensorFlow is a dozen element-wise ops): 1.37x
    #: the images/s on the CPU, validation accuracy within seed noise.
    pool_first: bool = True
    dense_units: int = 256
    #: 0.1: +0.2 % on the validation split over 0.25 (5 epochs, mean of 2 seeds: 0.9357); 0: 0.9347 (1 seed).
    dropout: float = 0.1
    #: ``one-cycle``: linear warm-up from a tenth of the peak to the peak rate (``peak_factor`` times the
    #: base ``--learning-rate``) over ``warmup_fraction`` of the run's steps, then cosine decay to zero.
    #: ``step``: the base rate times ``step_decay`` after every epoch (the former default).
    #: On the validation split (5 epochs, mean of 2 seeds) one-cycle peaking at 3x beat the step decay
    #: by 0.5 % (0.9339 against 0.9287); peaking at 2x gained 0.2 %.
    schedule: str = "one-cycle"
    warmup_fraction: float = 0.15
    peak_factor: float = 3.0
    step_decay: float = 0.6
    #: 0.1 gained 0.15-0.2 % on the validation split with one-cycle (with the step decay: nothing).
    label_smoothing: float = 0.1
    #: Training-time augmentation in the input pipeline (``pipeline.py``), never in the exported
    #: graph (augmentation layers made Keras 3.15's SavedModel export disagree with the trained
    #: model): a random horizontal flip of each image, and a random shift of up to ``shift``
    #: pixels along each axis (zeros fill the edge).
    flip: bool = False
    shift: int = 0
    #: ``float32`` or ``mixed_bfloat16`` (bfloat16 compute, float32 weights; the softmax stays float32).
    precision: str = "float32"
    #: XLA (``jit_compile``) of the train step. On CPU its convolutions are slower than oneDNN's.
    xla: bool = False
    #: Momentum of an exponential moving average of the weights, which replaces them at the end of
    #: training (Keras' ``use_ema``); 0: off.
    ema: float = 0.0
    #: Decoupled weight decay of Adam (AdamW's), times the learning rate every step; 0: off.
    weight_decay: float = 0.0
    #: After training, the batch norms' moving statistics are recomputed on training images
    #: (``recalibrate_batch_norm``); off: the moving averages of training stay.
    recalibrate_batch_norm: bool = True
    #: Train steps per call of the compiled step function (Keras' ``steps_per_execution``): fewer
    #: round trips between Python and the graph.
    steps_per_execution: int = 8

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def __post_init__(self) -> None:
        if self.schedule not in ("one-cycle", "step"):
            raise ValueError(f"schedule must be 'one-cycle' or 'step', got {self.schedule!r}")
        if self.precision not in ("float32", "mixed_bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'mixed_bfloat16', got {self.precision!r}")
        if (
            not 0 <= self.label_smoothing < 1
            or not 0 <= self.warmup_fraction < 1
            or not 0 <= self.shift < INPUT_SHAPE[0] // 2
            or self.peak_factor <= 0
        ):
            raise ValueError(f"recipe out of range: {self}")


#: The recipe every run uses unless a caller passes another one.
DEFAULT_RECIPE = Recipe()
#: The recipe before time to accuracy was measured (XLA by Keras' default): the lever table's baseline.
FORMER_RECIPE = Recipe(
    schedule="step",
    warmup_fraction=0.2,
    peak_factor=1.0,
    label_smoothing=0.0,
    xla=True,
    pool_first=False,
    recalibrate_batch_norm=False,
    steps_per_execution=1,
    dropout=0.25,
)


def input_spec() -> dict[str, Any]:
    """What the exported model takes and returns (written to metrics.json as ``model_input``)."""
    return {
        "name": INPUT_NAME,
        "shape": [None, *INPUT_SHAPE],
        "dtype": "float32",
        "layout": "NHW",
        "scale": "raw pixels 0..255 (the model divides by 255 itself)",
        "signature": SIGNATURE,
        "output": OUTPUT_NAME,
        "output_kind": "probabilities",
    }


def to_input(images: Any) -> Any:
    """uint8 images (N, 28, 28) -> float32 array (N, 28, 28), values unchanged (numpy in and out)."""
    import numpy as np

    return np.asarray(images, dtype=np.float32).reshape((-1, *INPUT_SHAPE))


def to_target(labels: Any) -> Any:
    """Class indices (N,) -> one-hot float32 (N, 10): Keras smooths labels only for one-hot targets."""
    import numpy as np

    return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def recalibrate_batch_norm(model: Any, images: Any, count: int = RECALIBRATION_IMAGES) -> None:
    """Set each batch norm's moving statistics to the exact statistics of ``count`` training images
    under the final weights (one forward pass in training mode; "precise batch norm").

    The moving averages lag behind weights that still changed fast at the end of training, and
    the exported model normalises with them: 1 epoch on 3,000 images scored 0.18 on held-out
    images with the lagging statistics.
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(to_input(images[:count]), training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum


def learning_rate_schedule(recipe: Recipe, learning_rate: float, steps_per_epoch: int, epochs: int) -> Any:
    """The per-step learning rate, a function of the optimizer's step count alone.

    Being a function of the step, it is saved with the optimizer and a resumed run continues the
    same curve; a run resumed with another number of epochs gets ``set_schedule``'s replacement.
    """
    from keras.optimizers import schedules

    total = max(1, steps_per_epoch * epochs)
    if recipe.schedule == "step":
        return schedules.ExponentialDecay(
            learning_rate, decay_steps=max(1, steps_per_epoch), decay_rate=recipe.step_decay, staircase=True
        )
    warmup = int(total * recipe.warmup_fraction)
    peak = learning_rate * recipe.peak_factor
    return schedules.CosineDecay(
        peak / 10 if warmup else peak,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def set_schedule(model: Any, recipe: Recipe, learning_rate: float, steps_per_epoch: int, epochs: int) -> None:
    """Give a (reloaded) model's optimizer the schedule of a run of ``epochs`` epochs."""
    model.optimizer.learning_rate = learning_rate_schedule(recipe, learning_rate, steps_per_epoch, epochs)


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    return math.ceil(train_images / batch_size)


def build_model(
    learning_rate: float, steps_per_epoch: int = 1, epochs: int = 1, recipe: Recipe = DEFAULT_RECIPE
) -> Any:
    """Conv blocks with batch norm and a dense head with batch norm and dropout; Adam on ``recipe``'s schedule."""
    import keras
    from keras import layers

    dtype = recipe.precision
    pixels = keras.Input(shape=INPUT_SHAPE, dtype="float32", name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="scale", dtype=dtype)(pixels)
    x = layers.Reshape((*INPUT_SHAPE, 1), name="add_channel", dtype=dtype)(x)
    for filters in recipe.widths:
        for conv in range(recipe.convs_per_block):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, dtype=dtype)(x)
            if recipe.pool_first and conv == recipe.convs_per_block - 1:
                x = layers.MaxPooling2D(2, dtype=dtype)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, dtype=dtype)(x)
            x = layers.ReLU(dtype=dtype)(x)
        if not recipe.pool_first:
            x = layers.MaxPooling2D(2, dtype=dtype)(x)
    x = layers.Flatten(dtype=dtype)(x)
    # Batch norm in the head too: 5 epochs with Dense(128) + dropout 0.3 alone underfit (0.91 train
    # and test accuracy); this trains faster for ~1% of the compute.
    x = layers.Dense(recipe.dense_units, use_bias=False, dtype=dtype)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, dtype=dtype)(x)
    x = layers.ReLU(dtype=dtype)(x)
    x = layers.Dropout(recipe.dropout, dtype=dtype)(x)
    # The softmax in float32 whatever the precision: the exported model returns float32 probabilities.
    probabilities = layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities", dtype="float32")(x)
    model = keras.Model(pixels, probabilities, name="fashion_mnist_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=learning_rate_schedule(recipe, learning_rate, steps_per_epoch, epochs),
            weight_decay=recipe.weight_decay or None,
            use_ema=recipe.ema > 0,
            ema_momentum=recipe.ema or 0.99,
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=recipe.xla,
        steps_per_execution=recipe.steps_per_execution,
    )
    return model
