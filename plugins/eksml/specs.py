"""Backend-neutral workload specs: one source of truth per workload.

A :class:`WorkloadSpec` says what to run (image, entrypoint, arguments, environment,
resources, replicas). Renderers turn it into a V1Pod, an MPIJob, a SageMaker training
request or a local command line; none of them invents arguments of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from eksml.nodes import TRAIN_ROLE

#: Where every image puts its entrypoint code (Dockerfiles copy ``images/<name>/`` here).
IMAGE_CODE_DIR = "/opt/eksml"


@dataclass(frozen=True)
class Resources:
    """Per-replica resource requests; GPUs become ``nvidia.com/gpu`` limits."""

    cpu: str = "2"
    memory: str = "8Gi"
    gpus: int = 0


@dataclass(frozen=True)
class WorkloadSpec:
    """A container workload, independent of where it runs."""

    name: str
    #: Folder under ``images/`` (also the image repository name).
    image: str
    #: Python file inside the image folder that is the entrypoint.
    script: str
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "script": self.script,
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
        """Inverse of :meth:`to_dict` (specs travel between tasks through XCom as dicts)."""
        data = dict(data)
        data["args"] = tuple(data.get("args", ()))
        data["env"] = MappingProxyType(dict(data.get("env", {})))
        data["labels"] = MappingProxyType(dict(data.get("labels", {})))
        data["resources"] = Resources(**data.get("resources", {}))
        return cls(**data)


TRAINING_IMAGES = {"tensorflow": "tf-fashion-mnist", "mxnet": "mxnet-horovod"}


def training_spec(
    *,
    framework: str,
    data_uri: str,
    model_uri: str,
    checkpoint_uri: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    gpus: int = 1,
    workers: int = 1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    run_labels: Mapping[str, str] | None = None,
) -> WorkloadSpec:
    """The training workload of ``framework`` for one run."""
    if framework not in TRAINING_IMAGES:
        raise ValueError(f"unknown framework {framework!r}: expected one of {', '.join(TRAINING_IMAGES)}")
    args = [
        "--data-uri",
        data_uri,
        "--model-uri",
        model_uri,
        "--checkpoint-uri",
        checkpoint_uri,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--learning-rate",
        repr(float(learning_rate)),
    ]
    if limit_train:
        args += ["--limit-train", str(limit_train)]
    if limit_test:
        args += ["--limit-test", str(limit_test)]
    distributed = framework == "mxnet"
    return WorkloadSpec(
        name=f"train-{framework}",
        image=TRAINING_IMAGES[framework],
        script="train.py",
        args=tuple(args),
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
