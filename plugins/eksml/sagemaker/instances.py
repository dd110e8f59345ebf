"""SageMaker training instance types we accept, with their GPUs per instance.

An explicit list (rather than any ``ml.*`` string) turns a typo into an error before a job is
created, and the GPU count picks the CPU or GPU Deep Learning Container and bounds the
Horovod processes per host. Extend the table when a new family is needed.
"""

from __future__ import annotations

from types import MappingProxyType

_CPU = (
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.m5.4xlarge",
    "ml.m5.12xlarge",
    "ml.m5.24xlarge",
    "ml.c5.xlarge",
    "ml.c5.2xlarge",
    "ml.c5.4xlarge",
    "ml.c5.9xlarge",
    "ml.c5.18xlarge",
    "ml.m6i.xlarge",
    "ml.m6i.2xlarge",
    "ml.m6i.4xlarge",
    "ml.c6i.xlarge",
    "ml.c6i.2xlarge",
    "ml.c6i.4xlarge",
)

_GPU = {
    "ml.p3.2xlarge": 1,
    "ml.p3.8xlarge": 4,
    "ml.p3.16xlarge": 8,
    "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8,
    "ml.g4dn.xlarge": 1,
    "ml.g4dn.2xlarge": 1,
    "ml.g4dn.4xlarge": 1,
    "ml.g4dn.8xlarge": 1,
    "ml.g4dn.16xlarge": 1,
    "ml.g4dn.12xlarge": 4,
    "ml.g5.xlarge": 1,
    "ml.g5.2xlarge": 1,
    "ml.g5.4xlarge": 1,
    "ml.g5.8xlarge": 1,
    "ml.g5.16xlarge": 1,
    "ml.g5.12xlarge": 4,
    "ml.g5.24xlarge": 4,
    "ml.g5.48xlarge": 8,
    "ml.g6.xlarge": 1,
    "ml.g6.2xlarge": 1,
    "ml.g6.4xlarge": 1,
    "ml.g6.8xlarge": 1,
    "ml.g6.16xlarge": 1,
    "ml.g6.12xlarge": 4,
    "ml.g6.24xlarge": 4,
    "ml.g6.48xlarge": 8,
}

#: Instance type -> GPUs per instance (0 for CPU instances).
TRAINING_INSTANCE_GPUS: MappingProxyType[str, int] = MappingProxyType({**{t: 0 for t in _CPU}, **_GPU})


#: The training types the trigger form offers (a choice among the accepted ones), and its default.
OFFERED_TRAINING_TYPES = (
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.c5.2xlarge",
    "ml.c5.4xlarge",
    "ml.g4dn.xlarge",
    "ml.g4dn.2xlarge",
    "ml.g4dn.12xlarge",
    "ml.g5.xlarge",
    "ml.g5.2xlarge",
    "ml.g5.12xlarge",
    "ml.p3.2xlarge",
    "ml.p3.8xlarge",
    "ml.p3.16xlarge",
    "ml.p4d.24xlarge",
)
#: The one training default: the trigger form's, and what a SageMaker training task uses when
#: neither its argument nor the run's param names a type.
DEFAULT_TRAINING_TYPE = "ml.p3.2xlarge"
#: Managed spot training unless a run says otherwise: checkpoints make an interruption resumable.
DEFAULT_USE_SPOT = True


def instance_gpus(instance_type: str) -> int:
    """GPUs of ``instance_type``; ValueError naming the accepted types for anything else."""
    try:
        return TRAINING_INSTANCE_GPUS[instance_type]
    except KeyError:
        families = sorted({t.rsplit(".", 1)[0] for t in TRAINING_INSTANCE_GPUS})
        raise ValueError(
            f"unknown SageMaker training instance type {instance_type!r}: expected an ml.* type of "
            f"the families {', '.join(families)} (see eksml.sagemaker.instances)"
        ) from None
