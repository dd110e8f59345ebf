"""The KServe predictor: V1 and V2 requests -> validated pixels -> micro-batched model calls."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from prometheus_client import Counter, Gauge, Histogram

from .backends import Backend, load_backend
from .batching import MicroBatcher
from .contract import BatchTooLarge, RequestError, parse_v1, parse_v2, predictions

BATCH_IMAGES = Histogram("eksml_batch_images", "Images per model call (after micro-batching)",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BATCH_REQUESTS = Histogram("eksml_batch_requests", "Requests grouped into one model call",
                           buckets=(1, 2, 4, 8, 16, 32, 64))
REJECTED = Counter("eksml_rejected_requests", "Requests refused before the model ran", ["reason"])
PREDICTED_IMAGES = Counter("eksml_predicted_images", "Images classified")
MODEL_INFO = Gauge("eksml_model_info", "The model version being served (value 1)",
                   ["model", "version", "framework"])


class TooLarge(InvalidInput):
    """Rendered as HTTP 413 by the server's exception handler."""


class FashionMnistModel(Model):
    """Serves one model version; ready once the version is loaded and has run once."""

    def __init__(self, name: str, model_uri: str, version: str | None = None, max_batch_size: int = 64,
                 max_latency_ms: float = 0.0) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.version = version or model_uri.rstrip("/").rsplit("/", 1)[-1]
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.backend: Backend | None = None
        self.batcher: MicroBatcher | None = None

    def load(self) -> bool:
        self.backend = load_backend(self.model_uri)
        self.batcher = MicroBatcher(self.backend.predict, self.max_batch_size, self.max_latency_ms,
                                    on_batch=self._observe_batch)
        MODEL_INFO.labels(self.name, self.version, self.backend.info.framework).set(1)
        self.ready = True
        return self.ready

    @staticmethod
    def _observe_batch(images: int, requests: int) -> None:
        BATCH_IMAGES.observe(images)
        BATCH_REQUESTS.observe(requests)
        PREDICTED_IMAGES.inc(images)

    # --- metadata (GET /v2/models/<name>) ---------------------------------------------------
    def get_input_types(self) -> list[dict]:
        return [{"name": "pixels", "datatype": "FP32", "shape": [-1, 28, 28]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "class", "datatype": "INT64", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]

    # --- request path ---------------------------------------------------------------------
    def _pixels(self, payload: dict | InferRequest) -> np.ndarray:
        try:
            if isinstance(payload, InferRequest):
                return parse_v2(payload.inputs, self.max_batch_size)
            return parse_v1(payload, self.max_batch_size)
        except BatchTooLarge as exc:
            REJECTED.labels("batch_too_large").inc()
            raise TooLarge(str(exc)) from None
        except RequestError as exc:
            REJECTED.labels("invalid").inc()
            raise InvalidInput(str(exc)) from None

    async def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> dict | InferResponse:
        assert self.batcher is not None and self.backend is not None
        pixels = self._pixels(payload)
        probabilities = await self.batcher.submit(pixels)
        classes, labels = predictions(probabilities, self.backend.info.class_names)
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, classes, labels, probabilities)
        return {"model_version": self.version,
                "predictions": [{"class": int(c), "label": label, "probabilities": p.tolist()}
                                for c, label, p in zip(classes, labels, probabilities)]}

    def _v2_response(self, request: InferRequest, classes: np.ndarray, labels: list[str],
                     probabilities: np.ndarray) -> InferResponse:
        n = len(classes)
        outputs = [
            InferOutput("class", [n], "INT64", data=classes.astype(np.int64).tolist()),
            InferOutput("label", [n], "BYTES", data=labels),
            InferOutput("probabilities", list(probabilities.shape), "FP32",
                        data=probabilities.astype(np.float32).ravel().tolist()),
        ]
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             model_version=self.version, infer_outputs=outputs)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        super().stop()


def model_summary(model: FashionMnistModel) -> dict[str, Any]:
    """Log line / readiness detail: which version serves, with which runtime."""
    info = model.backend.info if model.backend else None
    return {"model": model.name, "version": model.version, "uri": model.model_uri,
            "framework": info.framework if info else None,
            "max_batch_size": model.max_batch_size, "max_latency_ms": model.max_latency_ms}
