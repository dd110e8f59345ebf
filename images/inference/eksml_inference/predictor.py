"""The served model: one version's backend behind the micro-batcher, with its Prometheus metrics.

Protocol-neutral: the V1 and V2 modules turn requests into validated pixels, this turns
pixels into probabilities. The model is loaded (and has run once) before the server opens
its port, and it cannot be unloaded while serving: ``live`` is false only if that fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from .backends import Backend, load_backend, version_name
from .batching import MicroBatcher

BATCH_IMAGES = Histogram(
    "eksml_batch_images", "Images per model call (after micro-batching)", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
BATCH_REQUESTS = Histogram(
    "eksml_batch_requests", "Requests grouped into one model call", buckets=(1, 2, 4, 8, 16, 32, 64)
)
PREDICTED_IMAGES = Counter("eksml_predicted_images", "Images classified")
MODEL_INFO = Gauge("eksml_model_info", "The model version being served (value 1)", ["model", "version", "framework"])
#: Open Inference Protocol platform names of the runtimes.
PLATFORMS = {"tensorflow": "tensorflow_savedmodel", "mxnet": "onnxruntime_onnx", "onnx": "onnxruntime_onnx"}


class FashionMnistModel:
    """Serves one model version; ready once the version is loaded and has run once."""

    def __init__(
        self,
        name: str,
        model_uri: str,
        version: str | None = None,
        max_batch_size: int = 64,
        max_latency_ms: float = 0.0,
    ) -> None:
        self.name = name
        self.model_uri = model_uri
        self.version = version or version_name(model_uri)
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.backend: Backend | None = None
        self.batcher: MicroBatcher | None = None

    def load(self) -> None:
        """Fetch and load the version (raises ModelLoadError with the reason)."""
        self.backend = load_backend(self.model_uri)
        self.batcher = MicroBatcher(
            self.backend.predict, self.max_batch_size, self.max_latency_ms, on_batch=self._observe_batch
        )
        MODEL_INFO.labels(self.name, self.version, self.backend.info.framework).set(1)

    @property
    def ready(self) -> bool:
        return self.backend is not None and self.batcher is not None and not self.batcher.closed

    #: Liveness is readiness: the model never unloads, so a server without one must be restarted.
    live = ready

    def stalled_for(self) -> float:
        """Seconds the model call in progress has been waiting or running (0 when idle)."""
        return self.batcher.stalled_for() if self.batcher is not None else 0.0

    @property
    def class_names(self) -> tuple[str, ...]:
        assert self.backend is not None
        return self.backend.info.class_names

    @property
    def platform(self) -> str:
        framework = self.backend.info.framework if self.backend else ""
        return PLATFORMS.get(framework, framework)

    @staticmethod
    def _observe_batch(images: int, requests: int) -> None:
        BATCH_IMAGES.observe(images)
        BATCH_REQUESTS.observe(requests)
        PREDICTED_IMAGES.inc(images)

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities of validated pixels (N, 28, 28), computed in a shared model call."""
        assert self.batcher is not None
        return await self.batcher.submit(pixels)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


def model_summary(model: FashionMnistModel) -> dict[str, Any]:
    """Log line / readiness detail: which version serves, with which runtime."""
    info = model.backend.info if model.backend else None
    return {
        "model": model.name,
        "version": model.version,
        "uri": model.model_uri,
        "framework": info.framework if info else None,
        "max_batch_size": model.max_batch_size,
        "max_latency_ms": model.max_latency_ms,
    }
