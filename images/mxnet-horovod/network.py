"""The Gluon CNN trained on Fashion-MNIST, and how images are fed to it."""

from __future__ import annotations

from typing import Any

from trainkit.contract import NUM_CLASSES

#: Input of the exported model (symbol, params and ONNX alike): float32 pixels scaled to
#: [0, 1], layout NCHW. The inference server reads this from metrics.json ("model_input").
INPUT_NAME = "data"
INPUT_SHAPE = (1, 28, 28)


def input_spec() -> dict[str, Any]:
    return {
        "name": INPUT_NAME,
        "shape": [None, *INPUT_SHAPE],
        "dtype": "float32",
        "layout": "NCHW",
        "scale": "pixel / 255",
        "output_kind": "logits",
    }


def to_input(images: Any) -> Any:
    """uint8 images (N, 28, 28) -> float32 array (N, 1, 28, 28) in [0, 1] (numpy in, numpy out)."""
    import numpy as np

    return (np.asarray(images, dtype=np.float32) / 255.0).reshape((-1, *INPUT_SHAPE))


def build_network() -> Any:
    """Two conv blocks with batch norm, then a dense head with batch norm and dropout.

    Hybrid blocks only, so the trained network exports to a symbol graph and to ONNX.
    """
    from mxnet.gluon import nn

    net = nn.HybridSequential()
    net.add(
        nn.Conv2D(32, kernel_size=3, padding=1, in_channels=1),
        nn.BatchNorm(in_channels=32),
        nn.Activation("relu"),
        nn.MaxPool2D(pool_size=2),
        nn.Conv2D(64, kernel_size=3, padding=1, in_channels=32),
        nn.BatchNorm(in_channels=64),
        nn.Activation("relu"),
        nn.MaxPool2D(pool_size=2),
        nn.Flatten(),
        # Batch norm in the head too, as the TensorFlow network has: with Dense(128) + dropout 0.3
        # alone, 5 epochs of the default run stopped near 0.90 test accuracy.
        nn.Dense(256, use_bias=False, in_units=64 * 7 * 7),
        nn.BatchNorm(in_channels=256),
        nn.Activation("relu"),
        nn.Dropout(0.25),
        nn.Dense(NUM_CLASSES, in_units=256),
    )
    return net
