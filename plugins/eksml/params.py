"""The training DAG's run parameters: one JSON-schema definition for the trigger form,
the REST API and the first task's validation.

Airflow validates ``Param`` schemas when a run is created (the UI form refuses bad values);
``validate_training_params`` repeats the checks a schema cannot express and turns the
conf into a typed object, so a bad value fails the first task, never a GPU job.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from eksml.layout import data_uri_problem
from eksml.nodes import CLUSTER_MODES, EPHEMERAL_CLUSTER, EXISTING_CLUSTER, GPU_RESOURCE
from eksml.sagemaker.instances import DEFAULT_TRAINING_TYPE, DEFAULT_USE_SPOT, OFFERED_TRAINING_TYPES

FRAMEWORKS = ("tensorflow", "mxnet", "both")
TRAINERS = ("kubernetes", "sagemaker")

#: Sections of the trigger form (the UI groups params by the ``section`` key). The training
#: params carry none: they form the form's default section, "Run Parameters", the one the UI
#: opens by default; the others start collapsed (data slices, cloud-only settings).
TRAINING, DATA, CLUSTER, SAGEMAKER = None, "Data", "Cluster (aws profile)", "SageMaker (trainer=sagemaker)"
SECTIONS = (DATA, CLUSTER, SAGEMAKER)
#: The title the UI gives params without a section.
DEFAULT_SECTION = "Run Parameters"

#: name -> JSON-schema keywords (plus default/title/description/section) of each Param.
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "framework": {
        "section": TRAINING,
        "default": "tensorflow",
        "type": "string",
        "enum": list(FRAMEWORKS),
        "title": "Framework",
        "description": "TensorFlow (single node), MXNet with Horovod (distributed), or both side by side.",
    },
    "trainer": {
        "section": TRAINING,
        "default": "kubernetes",
        "type": "string",
        "enum": list(TRAINERS),
        "title": "Trainer",
        "description": "Where training runs: the Kubernetes cluster or Amazon SageMaker.",
    },
    # Epochs and batch size belong to each framework's recipe (its image's defaults): empty
    # leaves them to the image, a number overrides them.
    "epochs": {
        "section": TRAINING,
        "default": None,
        "type": ["null", "integer"],
        "minimum": 1,
        "maximum": 100,
        "title": "Epochs",
        "description": "Passes over the training data. Empty: the framework's recipe default.",
    },
    "batch_size": {
        "section": TRAINING,
        "default": None,
        "type": ["null", "integer"],
        "minimum": 8,
        "maximum": 4096,
        "title": "Batch size",
        "description": "Images per step (per Horovod process for MXNet). Empty: the framework's recipe default.",
    },
    "learning_rate": {
        "section": TRAINING,
        "default": 0.001,
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 1,
        "title": "Learning rate",
        "description": "Base learning rate (scaled by the number of Horovod processes for MXNet).",
    },
    "gpus": {
        "section": TRAINING,
        "default": 1,
        "type": "integer",
        "minimum": 0,
        "maximum": 8,
        "title": "GPUs per worker",
        "description": f"{GPU_RESOURCE} limit of each training pod (Horovod slots per worker).",
    },
    "workers": {
        "section": TRAINING,
        "default": 2,
        "type": "integer",
        "minimum": 1,
        "maximum": 16,
        "title": "Horovod workers",
        "description": "MPIJob workers (MXNet); locally, horovodrun processes.",
    },
    "limit_train": {
        "section": DATA,
        "default": None,
        "type": ["null", "integer"],
        "minimum": 100,
        "maximum": 60000,
        "title": "Training images (limit)",
        "description": "Train on the first N images only (quick runs). Empty: all 60,000.",
    },
    "limit_test": {
        "section": DATA,
        "default": None,
        "type": ["null", "integer"],
        "minimum": 100,
        "maximum": 10000,
        "title": "Test images (limit)",
        "description": "Evaluate on the first N test images only. Empty: all 10,000.",
    },
    "data_uri": {
        "section": DATA,
        "default": None,
        "type": ["null", "string"],
        "maxLength": 1024,
        "title": "Source data URI",
        "description": (
            "Folder or s3:// prefix with the four IDX .gz files. "
            "Empty: the configured source (or the triggering asset event's uri)."
        ),
    },
    "cluster": {
        "section": CLUSTER,
        "default": EXISTING_CLUSTER,
        "type": "string",
        "enum": list(CLUSTER_MODES),
        "title": "Cluster",
        "description": (
            "existing: train on the running cluster; ephemeral: create one for this run and delete it afterwards."
        ),
    },
    "sagemaker_instance_type": {
        "section": SAGEMAKER,
        "default": DEFAULT_TRAINING_TYPE,
        "type": "string",
        "enum": list(OFFERED_TRAINING_TYPES),
        "title": "SageMaker instance type",
        "description": "Instance type of SageMaker training jobs.",
    },
    "sagemaker_use_spot": {
        "section": SAGEMAKER,
        "default": DEFAULT_USE_SPOT,
        "type": "boolean",
        "title": "SageMaker managed spot",
        "description": "Use managed spot training (checkpoints make interruptions resumable).",
    },
    "min_improvement": {
        "section": TRAINING,
        "default": 0.0,
        "type": "number",
        "minimum": 0,
        "maximum": 0.5,
        "title": "Promotion margin",
        "description": (
            "A candidate becomes champion only if its test accuracy beats the champion's by at least this much."
        ),
    },
}


class ParamsError(ValueError):
    """A run parameter is invalid; the message names it."""


@dataclass(frozen=True)
class TrainingParams:
    framework: str = "tensorflow"
    trainer: str = "kubernetes"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 0.001
    gpus: int = 1
    workers: int = 2
    limit_train: int | None = None
    limit_test: int | None = None
    data_uri: str | None = None
    cluster: str = EXISTING_CLUSTER
    sagemaker_instance_type: str = DEFAULT_TRAINING_TYPE
    sagemaker_use_spot: bool = DEFAULT_USE_SPOT
    min_improvement: float = 0.0

    @property
    def frameworks(self) -> tuple[str, ...]:
        return ("tensorflow", "mxnet") if self.framework == "both" else (self.framework,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bounds_text(schema: dict[str, Any]) -> str:
    """The limits of a number param in words, as the form shows them under the field."""
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if low is None and "maximum" not in schema:
        return ""
    low_text = f"> {low}" if "exclusiveMinimum" in schema else f"{low}"
    return (
        f" Limits: {low_text} to {schema['maximum']}. The form clamps a number outside them to the nearest "
        "limit; the REST API refuses it (HTTP 400 naming the param)."
    )


def airflow_params() -> dict[str, Any]:
    """``Param`` objects for ``DAG(params=...)`` (imported lazily: DAG files parse fast).

    Each number's description ends with its limits and what the form and the API do with a
    value outside them.
    """
    from airflow.sdk import Param

    return {
        name: Param(
            **{
                **{k: v for k, v in schema.items() if v is not None or k != "section"},
                "description": schema["description"] + bounds_text(schema),
            }
        )
        for name, schema in PARAM_SCHEMAS.items()
    }


def _check_schema(name: str, value: Any, schema: dict[str, Any]) -> Any:
    """Check one value against its schema; return it typed (``2.0`` for an integer is ``2``).

    JSON Schema counts 2.0 as an integer, so the trigger form and the REST API accept it:
    the first task must agree rather than fail the run Airflow already created.
    """
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if value is None:
        if "null" not in types:
            raise ParamsError(f"param {name!r} is required")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"param {name!r} must be a finite number, got {value!r}")
    if "integer" in types and isinstance(value, float) and value.is_integer():
        value = int(value)
    python_types = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    if (
        isinstance(value, bool)
        and "boolean" not in types
        or not any(isinstance(value, python_types[t]) for t in types if t != "null")
    ):
        kinds = "/".join(t for t in types if t != "null") + (" or empty" if "null" in types else "")
        raise ParamsError(f"param {name!r} must be of type {kinds}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise ParamsError(f"param {name!r} must be one of {', '.join(map(str, schema['enum']))}, got {value!r}")
    if "minimum" in schema and value < schema["minimum"]:
        raise ParamsError(f"param {name!r} must be >= {schema['minimum']}, got {value!r}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise ParamsError(f"param {name!r} must be > {schema['exclusiveMinimum']}, got {value!r}")
    if "maximum" in schema and value > schema["maximum"]:
        raise ParamsError(f"param {name!r} must be <= {schema['maximum']}, got {value!r}")
    return value


def validate_training_params(raw: dict[str, Any]) -> TrainingParams:
    """Check every parameter and return them typed; raise :class:`ParamsError` naming the first bad one."""
    unknown = sorted(set(raw) - set(PARAM_SCHEMAS))
    if unknown:
        raise ParamsError(f"unknown param(s): {', '.join(unknown)}")
    values = {name: raw.get(name, schema["default"]) for name, schema in PARAM_SCHEMAS.items()}
    for name, schema in PARAM_SCHEMAS.items():
        values[name] = _check_schema(name, values[name], schema)
    problem = values["data_uri"] and data_uri_problem(values["data_uri"])
    if problem:
        raise ParamsError(f"param 'data_uri' {problem}")
    if values["trainer"] == "sagemaker" and values["cluster"] == EPHEMERAL_CLUSTER:
        raise ParamsError(
            "param 'cluster' = ephemeral makes no sense with trainer = sagemaker (SageMaker brings its own instances)"
        )
    values["learning_rate"] = float(values["learning_rate"])
    values["min_improvement"] = float(values["min_improvement"])
    return TrainingParams(**values)
