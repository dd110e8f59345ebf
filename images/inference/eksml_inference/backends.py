"""Load one model version from the model store and turn raw pixels into class probabilities.

A version folder (local path, ``file://`` or ``s3://``) holds ``metrics.json``, whose
``framework`` picks the runtime and whose ``model_input`` says what the exported model takes:

* ``tensorflow``: ``saved_model/`` through TensorFlow (serving signature; the model scales itself);
* ``mxnet``: ``model.onnx`` through onnxruntime, since MXNet (numpy<1.24) cannot share this
  environment with TensorFlow; the ONNX graph takes NCHW pixels / 255 and returns logits.

The same backends serve requests and score the evaluation step, so the gate measures exactly
what gets served.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trainkit import CLASS_NAMES, store
from trainkit.contract import METRICS

log = logging.getLogger(__name__)

SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "model.onnx"
#: ``model_input.scale`` values the backends understand.
SCALE_DIVIDE = "pixel / 255"
RAW_PREFIX = "raw"


class ModelLoadError(RuntimeError):
    """The model version is missing, incomplete or not loadable."""


class ModelOutputError(RuntimeError):
    """The model ran but returned something that is not class scores (wrong shape, NaN)."""


def version_name(uri: str) -> str:
    """A model version's name: the last part of its folder's URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelInfo:
    """What ``metrics.json`` says about a version, plus where its files were read from."""

    uri: str
    framework: str
    local_dir: Path
    model_input: dict[str, Any]
    class_names: tuple[str, ...] = CLASS_NAMES
    metrics: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    info: ModelInfo

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """float32 raw pixels (N, 28, 28) -> class probabilities (N, classes)."""


def _local_dir(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" not in uri:
        return Path(uri)
    return None


def fetch(uri: str, cache_dir: str | os.PathLike | None = None) -> ModelInfo:
    """Read ``metrics.json`` and make the serving files of version ``uri`` local.

    Local versions are used in place; remote ones are downloaded (only what serving needs,
    not ``model.keras`` or the MXNet params) into ``cache_dir`` or a fresh temporary folder.
    """
    uri = uri.rstrip("/")
    metrics_uri = store.join(uri, METRICS)
    try:
        present = store.exists(metrics_uri)
    except Exception as exc:  # unknown scheme, no credentials, endpoint down
        raise ModelLoadError(f"cannot read the model store at {uri}: {exc}") from exc
    if not present:
        raise ModelLoadError(f"no {METRICS} at {uri}: not a finished model version")
    try:
        metrics = store.read_json(metrics_uri)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{metrics_uri} is not valid JSON: {exc}") from exc
    framework = metrics.get("framework")
    local = _local_dir(uri)
    if local is None:
        if cache_dir:
            target = Path(cache_dir)
        else:
            target = Path(tempfile.mkdtemp(prefix="eksml-model-"))
            atexit.register(shutil.rmtree, target, True)
        wanted = SAVED_MODEL_DIR if framework == "tensorflow" else ONNX_FILE
        fs, base = store.filesystem(uri)
        if not fs.exists(f"{base}/{wanted}"):
            raise ModelLoadError(f"{uri} ({framework}) has no {wanted}")
        if wanted == SAVED_MODEL_DIR:
            store.download_dir(store.join(uri, wanted), target / wanted)
        else:
            fs.get_file(f"{base}/{wanted}", str(target / wanted))
        local = target
        log.info("downloaded %s of %s to %s", wanted, uri, target)
    names = tuple(metrics.get("class_names") or CLASS_NAMES)
    return ModelInfo(
        uri=uri,
        framework=str(framework),
        local_dir=local,
        model_input=dict(metrics.get("model_input") or {}),
        class_names=names,
        metrics=metrics,
    )


def _scale_divides(model_input: dict[str, Any]) -> bool:
    """Whether the exported model wants pixels / 255 (else raw 0..255 pixels)."""
    scale = str(model_input.get("scale", "")).strip()
    if scale == SCALE_DIVIDE:
        return True
    if scale.startswith(RAW_PREFIX):
        return False
    raise ModelLoadError(
        f"{METRICS} model_input.scale {scale!r} is not understood: expected "
        f"{SCALE_DIVIDE!r} or a value starting with {RAW_PREFIX!r}"
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _feature_shape(declared: Sequence[Any] | None, model_shape: Sequence[Any]) -> tuple[int, ...]:
    """Per-image input shape: metrics.json's ``model_input.shape`` or the model's own input."""
    dims = list(declared) if declared else list(model_shape)
    rest = dims[1:]
    if not rest or any(not isinstance(d, int) for d in rest):
        raise ModelLoadError(f"model input shape {dims} has no fixed per-image dimensions")
    if int(np.prod(rest)) != 28 * 28:
        raise ModelLoadError(f"model input shape {dims} does not hold a 28x28 image")
    return tuple(rest)


class _Base:
    def __init__(self, info: ModelInfo, feature_shape: tuple[int, ...], divide: bool, logits: bool) -> None:
        self.info = info
        self.feature_shape = feature_shape
        self.divide = divide
        self.logits = logits

    def _prepare(self, pixels: np.ndarray) -> np.ndarray:
        x = pixels.astype(np.float32, copy=True)
        if self.divide:
            x /= 255.0
        return x.reshape((-1, *self.feature_shape))

    def _finish(self, out: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (n, len(self.info.class_names)):
            raise ModelOutputError(f"model returned shape {out.shape}, expected ({n}, {len(self.info.class_names)})")
        if not np.isfinite(out).all():
            raise ModelOutputError("model returned non-finite scores (damaged weights?)")
        return _softmax(out) if self.logits else out

    def warm_up(self) -> None:
        """One prediction at load time: builds graphs and proves the model runs before ready."""
        self.predict(np.zeros((2, 28, 28), dtype=np.float32))


class TensorFlowBackend(_Base):
    """A Keras 3 SavedModel export, called through its serving signature."""

    def __init__(self, info: ModelInfo) -> None:
        import tensorflow as tf

        path = info.local_dir / SAVED_MODEL_DIR
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{info.uri}: no {SAVED_MODEL_DIR}/saved_model.pb")
        spec = info.model_input
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TensorFlow raises many types for a corrupt export
            raise ModelLoadError(f"{info.uri}: cannot load the SavedModel: {type(exc).__name__}: {exc}") from exc
        name = spec.get("signature", "serving_default")
        if name not in loaded.signatures:
            raise ModelLoadError(
                f"{info.uri}: SavedModel has no signature {name!r} (has {', '.join(loaded.signatures) or 'none'})"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self._fn = loaded.signatures[name]
        _, kwargs = self._fn.structured_input_signature
        if len(kwargs) != 1:
            raise ModelLoadError(f"{info.uri}: signature {name!r} takes {len(kwargs)} inputs, expected 1")
        self._input, tensor_spec = next(iter(kwargs.items()))
        outputs = list(self._fn.structured_outputs)
        self._output = spec.get("output") or (outputs[0] if len(outputs) == 1 else None)
        if self._output not in outputs:
            raise ModelLoadError(f"{info.uri}: output {self._output!r} not among {outputs}")
        self._tf = tf
        super().__init__(
            info,
            _feature_shape(spec.get("shape"), tensor_spec.shape.as_list()),
            divide=_scale_divides(spec) if spec else False,
            logits=spec.get("output_kind", "probabilities") == "logits",
        )

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        out = self._fn(**{self._input: self._tf.constant(self._prepare(pixels))})[self._output]
        return self._finish(out.numpy(), len(pixels))


class OnnxBackend(_Base):
    """An ONNX graph (the MXNet export) run by onnxruntime on CPU."""

    def __init__(self, info: ModelInfo, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = info.local_dir / ONNX_FILE
        if not path.is_file():
            raise ModelLoadError(f"{info.uri}: no {ONNX_FILE}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"{info.uri}: cannot load {ONNX_FILE}: {type(exc).__name__}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{info.uri}: ONNX graph takes {len(inputs)} inputs, expected 1")
        spec = info.model_input
        if not spec:
            raise ModelLoadError(f"{info.uri}: {METRICS} has no model_input (scale and layout of the ONNX input)")
        self._input = inputs[0].name
        # MXNet's graph ends in a dense layer: logits unless metrics.json says otherwise.
        super().__init__(
            info,
            _feature_shape(spec.get("shape"), inputs[0].shape),
            divide=_scale_divides(spec),
            logits=spec.get("output_kind", "logits") == "logits",
        )

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        out = self._session.run(None, {self._input: self._prepare(pixels)})[0]
        return self._finish(out, len(pixels))


def load_backend(uri: str, cache_dir: str | os.PathLike | None = None, warm_up: bool = True) -> Backend:
    """Fetch version ``uri`` and load it with the runtime its ``framework`` (or files) call for."""
    info = fetch(uri, cache_dir)
    saved_model = (info.local_dir / SAVED_MODEL_DIR / "saved_model.pb").is_file()
    onnx_file = (info.local_dir / ONNX_FILE).is_file()
    if info.framework == "tensorflow" or (info.framework not in ("mxnet", "onnx") and saved_model):
        backend: _Base = TensorFlowBackend(info)
    elif info.framework in ("mxnet", "onnx") or onnx_file:
        backend = OnnxBackend(info)
    else:
        raise ModelLoadError(
            f"{uri}: framework {info.framework!r} with neither "
            f"{SAVED_MODEL_DIR}/ nor {ONNX_FILE}: nothing this server can load"
        )
    if warm_up:
        try:
            backend.warm_up()
        except Exception as exc:  # a graph that loads but cannot run
            raise ModelLoadError(f"{uri}: the model fails on a test input: {type(exc).__name__}: {exc}") from exc
    log.info("loaded %s model %s from %s", info.framework, uri, info.local_dir)
    return backend
