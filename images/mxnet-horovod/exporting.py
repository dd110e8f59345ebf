"""Export the trained network for serving: MXNet symbol + params, and ONNX.

The ONNX file lets the inference server serve the MXNet model with onnxruntime, without MXNet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from network import INPUT_NAME, INPUT_SHAPE

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
ONNX_FILE = "model.onnx"


def export_symbol(net: Any, folder: Path) -> list[str]:
    """Hybridized export: ``model-symbol.json`` + ``model-0000.params`` (needs one forward pass done)."""
    net.export(str(folder / "model"), epoch=0)
    for name in (SYMBOL_FILE, PARAMS_FILE):
        if not (folder / name).is_file():
            raise RuntimeError(f"MXNet export did not write {name} in {folder}")
    return [SYMBOL_FILE, PARAMS_FILE]


def export_onnx(folder: Path) -> str:
    """Convert the exported symbol + params to ``model.onnx`` with a dynamic batch dimension."""
    import numpy as np
    import onnx
    from mxnet import onnx as mx_onnx

    target = folder / ONNX_FILE
    mx_onnx.export_model(
        str(folder / SYMBOL_FILE),
        str(folder / PARAMS_FILE),
        in_shapes=[(1, *INPUT_SHAPE)],
        in_types=[np.float32],
        onnx_file_path=str(target),
        dynamic=True,
        dynamic_input_shapes=[(None, *INPUT_SHAPE)],
    )  # the opset is the installed onnx's (pinned in requirements.txt): MXNet 1.9.1 has no argument for it
    model = onnx.load(str(target))
    _weights_out_of_inputs(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return ONNX_FILE


def _weights_out_of_inputs(model: Any) -> None:
    """Drop the weights MXNet's exporter also lists as graph inputs.

    Listed as inputs, onnxruntime must treat them as overridable and skips constant folding
    (and warns once per weight); the weights stay as initializers.
    """
    weights = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)


def onnx_max_abs_diff(folder: Path, net: Any, images: Any, ctx: Any = None) -> float | None:
    """Largest |ONNX - MXNet| logit difference on ``images`` (float32 NCHW); None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import mxnet as mx
    import numpy as np

    session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {INPUT_NAME: images})[0]
    mx_logits = net(mx.nd.array(images, ctx=ctx)).asnumpy()
    return float(np.abs(onnx_logits - mx_logits).max())
