"""AWS Deep Learning Container (DLC) training images per framework and region.

Script mode runs our own ``train.py`` inside the AWS-maintained framework image: the DLC
carries a framework build tuned for SageMaker instances (CUDA, NCCL, EFA) and SageMaker's
training toolkit, which downloads our source tarball and, for Horovod, starts ``mpirun``
across the instances. Nothing has to be pushed to ECR in the training account.

Account ids and tags are those AWS publishes for the SageMaker flavour of the DLCs
(aws/deep-learning-containers ``docs/src/data/<repository>/<version>-<cpu|gpu>-sagemaker.yml``,
rendered at https://aws.github.io/deep-learning-containers/reference/available_images/; the
SageMaker Python SDK's ``image_uri_config``), with each release's end of patch (EOP) from the
same files and the DLC support policy. Regions missing here raise an error rather than
guessing an account.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import MappingProxyType

#: DLC registry account per region; most regions share 763104351884.
_DEFAULT_ACCOUNT = "763104351884"
DLC_ACCOUNTS: MappingProxyType[str, str] = MappingProxyType(
    {
        **{
            region: _DEFAULT_ACCOUNT
            for region in (
                "us-east-1",
                "us-east-2",
                "us-west-1",
                "us-west-2",
                "ca-central-1",
                "sa-east-1",
                "eu-central-1",
                "eu-north-1",
                "eu-west-1",
                "eu-west-2",
                "eu-west-3",
                "ap-northeast-1",
                "ap-northeast-2",
                "ap-south-1",
                "ap-southeast-1",
                "ap-southeast-2",
            )
        },
        "af-south-1": "626614931356",
        "ap-east-1": "871362719292",
        "ap-northeast-3": "364406365360",
        "eu-south-1": "692866216735",
        "me-south-1": "217643126080",
        "cn-north-1": "727897471807",
        "cn-northwest-1": "727897471807",
        "us-gov-west-1": "442386744353",
    }
)


@dataclass(frozen=True)
class TrainingImage:
    """One DLC release: repository, CPU and GPU tags, and what script mode adds to it."""

    repository: str
    cpu_tag: str
    gpu_tag: str
    python: str
    #: ``requirements.txt`` lines shipped in the source tarball (the toolkit pip-installs them):
    #: what trainkit and the entrypoint import beyond the DLC, pinned for the DLC's Python.
    source_requirements: tuple[str, ...]
    #: AWS's end of patch for this release; None: AWS publishes no supported release of the
    #: framework at all (the image still pulls, but gets no security fixes).
    end_of_patch: dt.date | None

    def supported_on(self, day: dt.date) -> bool:
        return self.end_of_patch is not None and day <= self.end_of_patch


#: Framework (``specs.TRAINING_IMAGES`` key) -> the DLC that runs its entrypoint.
DEEP_LEARNING_CONTAINERS: MappingProxyType[str, TrainingImage] = MappingProxyType(
    {
        # The same TensorFlow as the EKS image (images/tf-fashion-mnist: tensorflow 2.21.0);
        # tensorflow-training 2.21 SageMaker DLC, GA 2026-07-10, EOP 2027-07-10.
        "tensorflow": TrainingImage(
            repository="tensorflow-training",
            cpu_tag="2.21.0-cpu-py312-amzn2023-sagemaker",
            gpu_tag="2.21.0-gpu-py312-cu129-amzn2023-sagemaker",
            python="3.12",
            source_requirements=("fsspec==2026.9.0",),
            end_of_patch=dt.date(2027, 7, 10),
        ),
        # The last MXNet DLC (Python 3.8, Horovod with MPI built in). AWS publishes no supported
        # MXNet DLC (none in the available-images data, none in the support policy's supported
        # frameworks), so running it is the user's choice (Settings.sagemaker_allow_unpatched_images)
        # and preflight says so. fsspec 2025.3.0 is the last release for Python 3.8; onnx 1.15.0
        # is the image's own pin (mx.onnx needs onnx.mapping).
        "mxnet": TrainingImage(
            repository="mxnet-training",
            cpu_tag="1.9.0-cpu-py38-ubuntu20.04-sagemaker",
            gpu_tag="1.9.0-gpu-py38-cu112-ubuntu20.04-sagemaker",
            python="3.8",
            source_requirements=("fsspec==2025.3.0", "onnx==1.15.0"),
            end_of_patch=None,
        ),
    }
)


def ecr_domain(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def training_image(framework: str) -> TrainingImage:
    try:
        return DEEP_LEARNING_CONTAINERS[framework]
    except KeyError:
        raise ValueError(
            f"no Deep Learning Container for framework {framework!r}: "
            f"expected one of {', '.join(DEEP_LEARNING_CONTAINERS)}"
        ) from None


def training_image_uri(framework: str, region: str, *, gpu: bool) -> str:
    """``<account>.dkr.ecr.<region>.<domain>/<repository>:<tag>`` of the framework's DLC."""
    image = training_image(framework)
    account = DLC_ACCOUNTS.get(region)
    if account is None:
        raise ValueError(
            f"no Deep Learning Container registry known for region {region!r}: "
            f"known regions are {', '.join(sorted(DLC_ACCOUNTS))} "
            f"(or use image_source='project')"
        )
    tag = image.gpu_tag if gpu else image.cpu_tag
    return f"{account}.dkr.ecr.{region}.{ecr_domain(region)}/{image.repository}:{tag}"
