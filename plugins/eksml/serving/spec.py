"""The inference server as a :class:`~eksml.specs.WorkloadSpec`: one source for pod and process.

The Deployment's container and the local profile's process take their entrypoint, arguments
and environment from this spec, so both serve a version with the same settings.
"""

from __future__ import annotations

from types import MappingProxyType

from eksml.nodes import INFERENCE_ROLE
from eksml.specs import Resources, WorkloadSpec

IMAGE = "inference"
SCRIPT = "serve.py"
CONTAINER_PORT = 8080
DEFAULT_MAX_BATCH_SIZE = 64
#: No deliberate wait: requests that queue while the model runs form the next batch. On a
#: CPU with one model thread a wait only adds latency when idle (bench/inference_latency.py).
DEFAULT_MAX_LATENCY_MS = 0.0


def serving_spec(
    model_uri: str,
    version: str,
    model_name: str,
    *,
    host: str = "0.0.0.0",
    port: int = CONTAINER_PORT,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
) -> WorkloadSpec:
    """The server of ``version`` (at ``model_uri``), listening on ``host:port``."""
    if not model_uri.startswith(("s3://", "file://", "/")):
        raise ValueError(f"model_uri must be s3://, file:// or an absolute path, got {model_uri!r}")
    if not version:
        raise ValueError("version must not be empty")
    args = (
        "--model-uri",
        model_uri,
        "--model-name",
        model_name,
        "--model-version",
        version,
        "--host",
        host,
        "--http-port",
        str(port),
        "--max-batch-size",
        str(max_batch_size),
        "--max-latency-ms",
        repr(float(max_latency_ms)),
    )
    return WorkloadSpec(
        name=f"serve-{model_name}",
        image=IMAGE,
        script=SCRIPT,
        args=args,
        env=MappingProxyType({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}),
        resources=Resources(cpu="1", memory="2Gi", gpus=0),
        node_role=INFERENCE_ROLE,
        labels=MappingProxyType({"app.kubernetes.io/part-of": "eksml"}),
    )
