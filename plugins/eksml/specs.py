"""Backend-neutral workload specs: one source of truth per workload.

A :class:`WorkloadSpec` says what to run (image, entrypoint, resources, replicas) and what
the entrypoint is given, by name: its framework, its locations (``data_uri``, ``model_uri``,
``checkpoint_uri``) and its hyperparameters (``epochs``, ``batch_size``...). Only the edges
that start something turn these into a command line (:meth:`WorkloadSpec.argv`: a pod, an
MPIJob launcher, a local process) or into SageMaker's named hyperparameters and channels;
nothing parses a command line back into names.

Specs travel between tasks through XCom as dicts; :func:`coerce_spec` is the one way back
from whatever a templated operator field renders to, and it checks every field, so a bad
spec fails its task before any pod, process or job is started.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any, Union

from eksml.nodes import TRAIN_ROLE

#: Where every image puts its entrypoint code (Dockerfiles copy ``images/<name>/`` here).
IMAGE_CODE_DIR = "/opt/eksml"

#: Training framework -> the folder under ``images/`` (also the image repository name).
TRAINING_IMAGES = MappingProxyType({"tensorflow": "tf-fashion-mnist", "mxnet": "mxnet-horovod"})

#: A hyperparameter's value; rendered as text only at the edge (:func:`arg_text`).
Hyperparameter = Union[int, float, str]

#: Image folder names are also image repository names (lowercase, digits, ``-_.``).
_IMAGE_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")
#: Location and hyperparameter names: what the entrypoint's ``--<name>`` flag says, with ``_``.
_ARG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class WorkloadSpecError(ValueError):
    """The workload spec given to an operator is missing, malformed or inconsistent."""


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``: the entrypoints' spelling of a named input."""
    return "--" + name.replace("_", "-")


def arg_text(value: Hyperparameter) -> str:
    """A named input's value as one command-line (or SageMaker hyperparameter) string."""
    if isinstance(value, bool):
        raise WorkloadSpecError(f"boolean {value!r} has no command-line form; use a flag of its own")
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Resources:
    """Per-replica resource requests; GPUs become ``nvidia.com/gpu`` limits."""

    cpu: str = "2"
    memory: str = "8Gi"
    gpus: int = 0


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class WorkloadSpec:
    """A container workload, independent of where it runs."""

    name: str
    #: Folder under ``images/`` (also the image repository name).
    image: str
    #: Python file inside the image folder that is the entrypoint.
    script: str
    #: Training framework (a :data:`TRAINING_IMAGES` key); None for workloads that do not train.
    framework: str | None = None
    #: Named URIs the entrypoint reads and writes (``data_uri``, ``model_uri``, ``checkpoint_uri``).
    locations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Named hyperparameters (``epochs``, ``batch_size``, ``learning_rate``...).
    hyperparameters: Mapping[str, Hyperparameter] = field(default_factory=lambda: MappingProxyType({}))
    #: Further command-line arguments, for entrypoints that take no named inputs (serving).
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    resources: Resources = Resources()
    #: Horovod: number of workers, and processes (GPUs) per worker.
    replicas: int = 1
    slots_per_replica: int = 1
    #: Node group the workload belongs on (``role`` node label).
    node_role: str = TRAIN_ROLE
    distributed: bool = False
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def total_processes(self) -> int:
        return self.replicas * self.slots_per_replica

    def container_command(self) -> list[str]:
        """Command of the container when it runs in Kubernetes or SageMaker."""
        return ["python", f"{IMAGE_CODE_DIR}/{self.script}"]

    def argv(self) -> list[str]:
        """The entrypoint's arguments: locations, then hyperparameters, as ``--name value``; then ``args``.

        Called only where a workload is started (pod, MPIJob launcher, local process).
        """
        named = [*self.locations.items(), *self.hyperparameters.items()]
        return [*(text for name, value in named for text in (flag(name), arg_text(value))), *self.args]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "script": self.script,
            "framework": self.framework,
            "locations": dict(self.locations),
            "hyperparameters": dict(self.hyperparameters),
            "args": list(self.args),
            "env": dict(self.env),
            "resources": vars(self.resources).copy(),
            "replicas": self.replicas,
            "slots_per_replica": self.slots_per_replica,
            "node_role": self.node_role,
            "distributed": self.distributed,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkloadSpec:
        """Inverse of :meth:`to_dict`, unchecked: operators use :func:`coerce_spec`."""
        data = dict(data)
        data["args"] = tuple(data.get("args", ()))
        for name in ("locations", "hyperparameters", "env", "labels"):
            data[name] = _frozen(data.get(name))
        data["resources"] = Resources(**data.get("resources", {}))
        return cls(**data)


def coerce_spec(value: WorkloadSpec | Mapping[str, Any] | str | None) -> WorkloadSpec:
    """The checked spec of ``value`` (a spec, its ``to_dict()``, or that dict as text).

    Specs reach operators through XCom: a dict when the DAG renders templates as native
    objects, a JSON string or a Python dict literal when it does not.
    """
    if isinstance(value, WorkloadSpec):
        return validate_spec(value)
    if isinstance(value, str):
        value = _parse_text(value)
    if value is None:
        raise WorkloadSpecError("no workload spec: the upstream task pushed nothing to XCom (got None)")
    if not isinstance(value, Mapping):
        raise WorkloadSpecError(f"workload spec must be a mapping, got {type(value).__name__}")
    missing = {"name", "image", "script"} - set(value)
    if missing:
        raise WorkloadSpecError(f"workload spec lacks {', '.join(sorted(missing))}: {dict(value)!r:.200}")
    try:
        spec = WorkloadSpec.from_dict(value)
    except (TypeError, ValueError) as exc:  # unknown keys, or a field of the wrong shape
        raise WorkloadSpecError(f"workload spec has unexpected fields: {exc}") from None
    return validate_spec(spec)


def _parse_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        raise WorkloadSpecError("no workload spec: the template rendered to an empty string")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    try:  # a dict rendered without render_template_as_native_obj is its Python repr
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        raise WorkloadSpecError(f"workload spec is neither JSON nor a dict literal: {stripped[:120]!r}") from None


def _check_named(kind: str, items: Mapping[str, Any]) -> None:
    for name, value in items.items():
        if not isinstance(name, str) or not _ARG_NAME.match(name):
            raise WorkloadSpecError(f"{kind} name {name!r} must be lowercase letters, digits and '_'")
        if kind == "location":
            ok = isinstance(value, str) and bool(value)
        else:
            ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
            ok = ok and (not isinstance(value, float) or math.isfinite(value))
        if not ok:
            expected = "a non-empty string" if kind == "location" else "an integer, a finite number or a string"
            raise WorkloadSpecError(f"{kind} {name!r} must be {expected}, got {value!r}")


def validate_spec(spec: WorkloadSpec) -> WorkloadSpec:
    """Return ``spec`` when every field is usable; raise :class:`WorkloadSpecError` naming the first that is not."""
    if not _IMAGE_NAME.match(spec.image or ""):
        raise WorkloadSpecError(f"image {spec.image!r} is not an image folder name (lowercase, digits, '-', '_', '.')")
    script = PurePosixPath(spec.script or "")
    if not spec.script or script.is_absolute() or ".." in script.parts or script.suffix != ".py":
        raise WorkloadSpecError(f"script {spec.script!r} must be a relative .py path inside the image folder")
    if spec.framework is not None and spec.framework not in TRAINING_IMAGES:
        raise WorkloadSpecError(
            f"unknown framework {spec.framework!r}: expected one of {', '.join(TRAINING_IMAGES)} (or none)"
        )
    _check_named("location", spec.locations)
    _check_named("hyperparameter", spec.hyperparameters)
    both = set(spec.locations) & set(spec.hyperparameters)
    if both:
        raise WorkloadSpecError(f"{', '.join(sorted(both))} is both a location and a hyperparameter")
    if not all(isinstance(arg, str) for arg in spec.args):
        raise WorkloadSpecError(f"every argument must be a string, got {list(spec.args)!r}")
    for key, val in spec.env.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)) or not isinstance(val, str):
            raise WorkloadSpecError(
                f"environment variable {key!r}={val!r} needs a C identifier name and a string value"
            )
    if not (isinstance(spec.replicas, int) and spec.replicas >= 1):
        raise WorkloadSpecError(f"replicas must be an integer >= 1, got {spec.replicas!r}")
    if not (isinstance(spec.slots_per_replica, int) and spec.slots_per_replica >= 1):
        raise WorkloadSpecError(f"slots_per_replica must be an integer >= 1, got {spec.slots_per_replica!r}")
    gpus = spec.resources.gpus
    if not (isinstance(gpus, int) and gpus >= 0):
        raise WorkloadSpecError(f"resources.gpus must be an integer >= 0, got {gpus!r}")
    for name in ("cpu", "memory"):
        _check_quantity(name, getattr(spec.resources, name))
    if not spec.node_role:
        raise WorkloadSpecError("node_role must name a node group role (for example 'train')")
    return spec


def _check_quantity(name: str, value: Any) -> None:
    from kubernetes.utils import parse_quantity  # the client's own parser: what the API server accepts

    try:
        if parse_quantity(str(value)) <= 0:
            raise ValueError
    except ValueError:
        raise WorkloadSpecError(f"resources.{name} {value!r} is not a positive Kubernetes quantity") from None


def training_spec(
    *,
    framework: str,
    data_uri: str,
    model_uri: str,
    checkpoint_uri: str,
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float,
    gpus: int = 1,
    workers: int = 1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    run_labels: Mapping[str, str] | None = None,
) -> WorkloadSpec:
    """The training workload of ``framework`` for one run; ``epochs`` or ``batch_size`` None: the image's own."""
    if framework not in TRAINING_IMAGES:
        raise ValueError(f"unknown framework {framework!r}: expected one of {', '.join(TRAINING_IMAGES)}")
    recipe = {"epochs": epochs, "batch_size": batch_size}
    hyperparameters: dict[str, Hyperparameter] = {k: int(v) for k, v in recipe.items() if v is not None}
    hyperparameters["learning_rate"] = float(learning_rate)
    if limit_train:
        hyperparameters["limit_train"] = int(limit_train)
    if limit_test:
        hyperparameters["limit_test"] = int(limit_test)
    distributed = framework == "mxnet"
    return WorkloadSpec(
        name=f"train-{framework}",
        image=TRAINING_IMAGES[framework],
        script="train.py",
        framework=framework,
        locations=MappingProxyType({"data_uri": data_uri, "model_uri": model_uri, "checkpoint_uri": checkpoint_uri}),
        hyperparameters=MappingProxyType(hyperparameters),
        env=MappingProxyType({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}),
        resources=Resources(cpu="4" if gpus else "2", memory="16Gi" if gpus else "8Gi", gpus=gpus),
        replicas=workers if distributed else 1,
        slots_per_replica=max(gpus, 1) if distributed else 1,
        node_role=TRAIN_ROLE,
        distributed=distributed,
        labels=MappingProxyType(
            {"app.kubernetes.io/part-of": "eksml", "eksml/framework": framework, **(run_labels or {})}
        ),
    )
