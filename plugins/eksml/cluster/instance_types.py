"""EC2 instance types the node groups accept, checked before eksctl is ever called.

A typo in an instance type would otherwise surface only after CloudFormation has spent
minutes building a VPC and a control plane. GPU types carry their GPU count, which the
cluster autoscaler needs as a node-template tag to scale the train group up from zero.
"""

from __future__ import annotations

import re

from eksml.errors import InvalidInput

#: NVIDIA GPU instance types and their GPU count (AWS EC2 accelerated computing docs).
GPU_INSTANCE_TYPES: dict[str, int] = {
    "p3.2xlarge": 1,
    "p3.8xlarge": 4,
    "p3.16xlarge": 8,
    "p3dn.24xlarge": 8,
    "p4d.24xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.4xlarge": 1,
    "p5.48xlarge": 8,
    "p5e.48xlarge": 8,
    "p5en.48xlarge": 8,
    "p6-b200.48xlarge": 8,
    **{f"g4dn.{s}": 1 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    **{
        f"{family}.{size}": count
        for family in ("g5", "g6", "g6e")
        for size, count in (
            ("xlarge", 1),
            ("2xlarge", 1),
            ("4xlarge", 1),
            ("8xlarge", 1),
            ("16xlarge", 1),
            ("12xlarge", 4),
            ("24xlarge", 4),
            ("48xlarge", 8),
        )
    },
}

#: GPU model per instance family, the value of the node label ``k8s.amazonaws.com/accelerator``
#: (cluster-autoscaler AWS README, "Special note on GPU instances": P2 -> ``nvidia-tesla-k80``).
GPU_ACCELERATORS: dict[str, str] = {
    "p3": "nvidia-tesla-v100",
    "p3dn": "nvidia-tesla-v100",
    "p4d": "nvidia-a100",
    "p4de": "nvidia-a100",
    "p5": "nvidia-h100",
    "p5e": "nvidia-h200",
    "p5en": "nvidia-h200",
    "p6-b200": "nvidia-b200",
    "g4dn": "nvidia-tesla-t4",
    "g5": "nvidia-a10g",
    "g6": "nvidia-l4",
    "g6e": "nvidia-l40s",
}


def gpu_accelerator(instance_types: tuple[str, ...] | list[str]) -> str | None:
    """The accelerator label value of a GPU group: its GPU model, ``nvidia`` when spot mixes
    models, None for a type not known here (validation names it)."""
    models = {GPU_ACCELERATORS.get(t.split(".", 1)[0]) for t in instance_types}
    if not models or None in models:
        return None
    return models.pop() if len(models) == 1 else "nvidia"


#: x86_64 general purpose, compute and memory optimised families (the images are amd64).
CPU_FAMILIES: frozenset[str] = frozenset(
    "t3 t3a m5 m5a m5d m5n m6i m6a m6id m7i m7a c5 c5a c5d c5n c6i c6a c7i c7a r5 r5a r5d r6i r6a r7i r7a".split()
)

#: Graviton families: valid EC2 types, but the project's images are built for amd64.
ARM_FAMILIES: frozenset[str] = frozenset({"m6g", "m7g", "m8g", "c6g", "c7g", "c8g", "r6g", "r7g", "t4g", "g5g"})

_TYPE_RE = re.compile(
    r"^(?P<family>[a-z][a-z0-9-]*)\.(?P<size>nano|micro|small|medium|large|xlarge|\d+xlarge|metal(-\d+xl)?)$"
)


class InstanceTypeError(InvalidInput):
    """An instance type that does not exist or does not fit its node group."""


def _parse(instance_type: str) -> tuple[str, str]:
    match = _TYPE_RE.match(instance_type or "")
    if not match:
        raise InstanceTypeError(
            f"{instance_type!r} is not an EC2 instance type name (expected FAMILY.SIZE such as m5.2xlarge)"
        )
    return match["family"], match["size"]


def gpu_count(instance_type: str) -> int:
    """GPUs per node of a known NVIDIA instance type; raise for anything else."""
    _parse(instance_type)
    if instance_type not in GPU_INSTANCE_TYPES:
        known = ", ".join(sorted(GPU_INSTANCE_TYPES))
        raise InstanceTypeError(
            f"{instance_type!r} is not a known NVIDIA GPU instance type for the train node group; known: {known}"
        )
    return GPU_INSTANCE_TYPES[instance_type]


def check_cpu_instance_type(instance_type: str) -> None:
    """Accept an x86_64 type of a known family (any standard size), or a GPU type."""
    family, _ = _parse(instance_type)
    if instance_type in GPU_INSTANCE_TYPES:
        return
    if family in ARM_FAMILIES:
        raise InstanceTypeError(
            f"{instance_type!r} is an arm64 (Graviton) type, but the project's images are built for amd64"
        )
    if family not in CPU_FAMILIES:
        raise InstanceTypeError(
            f"unknown instance type {instance_type!r}: family {family!r} is not one of "
            + ", ".join(sorted(CPU_FAMILIES))
        )


def check_gpu_instance_types(instance_types: list[str]) -> int:
    """Validate the train group's types and return their common GPU count.

    Mixed GPU counts would make the autoscaler's node template (and the pipeline's
    GPUs-per-worker arithmetic) wrong for some nodes, so they are refused.
    """
    if not instance_types:
        raise InstanceTypeError("the train node group needs at least one instance type")
    if len(set(instance_types)) != len(instance_types):
        raise InstanceTypeError(f"duplicate instance types in {instance_types}")
    counts = {t: gpu_count(t) for t in instance_types}
    if len(set(counts.values())) > 1:
        raise InstanceTypeError(f"all train instance types must have the same GPU count, got {counts}")
    return next(iter(counts.values()))


#: EC2 service quotas (vCPUs of running instances) that bound GPU node groups, by family letter
#: and purchase option: (quota code, quota name), as listed by Service Quotas for ``ec2``.
EC2_GPU_QUOTAS: dict[tuple[str, bool], tuple[str, str]] = {
    ("g", False): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("p", False): ("L-417A185B", "Running On-Demand P instances"),
    ("g", True): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", True): ("L-7212CCBC", "All P Spot Instance Requests"),
}


#: The quotas that bound the CPU node groups (families A, C, D, H, I, M, R, T, Z), by purchase
#: option. New accounts often start at 5-32 vCPUs here, below one m5.2xlarge plus system nodes.
EC2_STANDARD_QUOTA = ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
EC2_STANDARD_SPOT_QUOTA = ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests")
_STANDARD_LETTERS = frozenset("acdhimrtz")


def ec2_quota_for(instance_type: str, spot: bool = False) -> tuple[str, str]:
    """The EC2 vCPU quota (code, name) that limits how many ``instance_type`` nodes can run."""
    family = instance_type.split(".", 1)[0][:1].lower()
    if (family, spot) in EC2_GPU_QUOTAS:
        return EC2_GPU_QUOTAS[(family, spot)]
    if family in _STANDARD_LETTERS:
        return EC2_STANDARD_SPOT_QUOTA if spot else EC2_STANDARD_QUOTA
    raise InstanceTypeError(f"no EC2 vCPU quota known for {instance_type!r}")


def vcpus(instance_type: str) -> int:
    """vCPUs of an x86 EC2 size: xlarge = 4, each multiple of it as many times 4, the smaller
    sizes of the families accepted here 2 (t3.nano to m5.large), metal as 24xlarge."""
    _, size = _parse(instance_type)
    if size.startswith("metal"):
        return 96
    if size.endswith("xlarge"):
        return 4 * int(size[: -len("xlarge")] or 1)
    return 2
