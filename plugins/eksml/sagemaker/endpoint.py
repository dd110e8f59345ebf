"""Deployment target ``sagemaker-endpoint``: a registered TensorFlow version behind a SageMaker endpoint.

Served by the AWS TensorFlow Serving Deep Learning Container, which answers SageMaker's
``/ping`` and ``/invocations`` (our KServe-protocol server does not). Every version gets its own
model and endpoint config (names derived from endpoint and version); the endpoint itself is
created once and then updated in place, which SageMaker does without downtime and rolls back
when the new variant fails to start, so the previous version keeps serving.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator

from eksml.layout import Area, area_uri
from eksml.sagemaker.images import DLC_ACCOUNTS, ecr_domain
from eksml.sagemaker.instances import DEFAULT_HOSTING_TYPE, HOSTING_INSTANCE_GPUS
from eksml.sagemaker.request import SageMakerRequestError, check_role_arn, require_s3, unique_name, validate_name
from eksml.settings import AwsProviderSettingsMixin, Settings
from eksml.storage import store_path

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

#: TensorFlow Serving DLC for SageMaker hosting (CPU and GPU tags of one release): 2.20, the
#: newest AWS publishes (EOP 2027-08-20; no 2.21 inference DLC yet, the EKS image trains with
#: 2.21); aws/deep-learning-containers docs/src/data/tensorflow-inference/2.20-*-sagemaker.yml.
SERVING_REPOSITORY = "tensorflow-inference"
SERVING_CPU_TAG = "2.20.0-cpu-py312-amzn2023-sagemaker"
SERVING_GPU_TAG = "2.20.0-gpu-py312-cu129-amzn2023-sagemaker"
#: TensorFlow Serving loads ``<model dir>/<numeric version>/saved_model.pb``.
SERVING_VERSION_DIR = "1"


def serving_image_uri(region: str, *, gpu: bool) -> str:
    account = DLC_ACCOUNTS.get(region)
    if account is None:
        raise SageMakerRequestError(f"no Deep Learning Container registry known for region {region!r}")
    return (
        f"{account}.dkr.ecr.{region}.{ecr_domain(region)}/{SERVING_REPOSITORY}:"
        f"{SERVING_GPU_TAG if gpu else SERVING_CPU_TAG}"
    )


def build_endpoint_requests(
    settings: Settings,
    *,
    endpoint_name: str,
    version: str,
    model_data_url: str,
    instance_type: str = DEFAULT_HOSTING_TYPE,
    instance_count: int = 1,
    tags: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"Model", "EndpointConfig", "Endpoint"}`` for ``SageMakerEndpointOperator(config=...)``."""
    validate_name(endpoint_name, "endpoint name")
    if instance_type not in HOSTING_INSTANCE_GPUS:
        raise SageMakerRequestError(
            f"unknown hosting instance type {instance_type!r}: expected one of {', '.join(HOSTING_INSTANCE_GPUS)}"
        )
    if int(instance_count) < 1:
        raise SageMakerRequestError(f"instance_count must be >= 1, got {instance_count}")
    check_role_arn(settings.sagemaker_role_arn)
    require_s3("model_data_url", model_data_url)
    name = unique_name(endpoint_name, version)
    tag_list = [{"Key": k, "Value": str(v)} for k, v in {"eksml/model-version": version, **(tags or {})}.items()]
    model: dict[str, Any] = {
        "ModelName": name,
        "ExecutionRoleArn": settings.sagemaker_role_arn,
        "PrimaryContainer": {
            "Image": serving_image_uri(settings.region, gpu=HOSTING_INSTANCE_GPUS[instance_type] > 0),
            "ModelDataUrl": model_data_url,
            "Mode": "SingleModel",
        },
        "Tags": tag_list,
    }
    if settings.sagemaker_subnets and settings.sagemaker_security_groups:
        model["VpcConfig"] = {
            "Subnets": list(settings.sagemaker_subnets),
            "SecurityGroupIds": list(settings.sagemaker_security_groups),
        }
    return {
        "Model": model,
        "EndpointConfig": {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": instance_type,
                    "InitialInstanceCount": int(instance_count),
                    "InitialVariantWeight": 1.0,
                }
            ],
            "Tags": tag_list,
        },
        "Endpoint": {"EndpointName": endpoint_name, "EndpointConfigName": name, "Tags": tag_list},
    }


def package_for_serving(version_dir: ObjectStoragePath, target: ObjectStoragePath) -> ObjectStoragePath:
    """Write ``model.tar.gz`` with the version's SavedModel under ``1/`` (TensorFlow Serving's layout)."""
    from airflow.sdk import ObjectStoragePath

    saved_model = version_dir / "saved_model"
    if not (saved_model / "saved_model.pb").exists():
        raise SageMakerRequestError(
            f"{version_dir} holds no saved_model/saved_model.pb: only TensorFlow "
            f"versions can be served by the TensorFlow Serving endpoint"
        )
    with tempfile.TemporaryDirectory(prefix="sm-serving-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for file in sorted(p for p in saved_model.rglob("*") if p.is_file()):
                rel = file.path[len(saved_model.path.rstrip("/")) :].lstrip("/")
                info = tarfile.TarInfo(f"{SERVING_VERSION_DIR}/{rel}")
                with file.open("rb") as handle:
                    data = handle.read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        ObjectStoragePath(archive.as_uri()).copy(target)
    return target


def _exists(describe: Any, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        describe(name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException":
            return False
        raise
    return True


class SageMakerEndpointDeployOperator(AwsProviderSettingsMixin, SageMakerEndpointOperator):
    """Deploy a registered version to a SageMaker endpoint: create it, or update it in place.

    :param version_uri: the registered version folder (``<store>/models/<model>/<version>``; templated).
    :param endpoint_name: the endpoint, stable across versions.
    The model and endpoint config of a version are created once; a retried deployment reuses them.
    ``deferrable`` defaults to Airflow's ``[operators] default_deferrable``, ``aws_conn_id`` and
    ``region_name`` to the settings'.
    """

    template_fields: Sequence[str] = (*SageMakerEndpointOperator.template_fields, "version_uri", "endpoint_name")

    def __init__(
        self,
        *,
        version_uri: str,
        endpoint_name: str,
        instance_type: str = DEFAULT_HOSTING_TYPE,
        instance_count: int = 1,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        self.note_given_aws_arguments(kwargs)
        super().__init__(config={}, operation="create", **kwargs)
        self.version_uri = version_uri
        self.endpoint_name = endpoint_name
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.settings = settings

    def execute(self, context: Context) -> dict:
        settings = self.resolved_settings()
        version = self.version_uri.rstrip("/").rsplit("/", 1)[-1]
        model_data = area_uri(
            settings.store_uri, Area.SAGEMAKER, settings.model_name, version, "endpoint", "model.tar.gz"
        )
        self.config = build_endpoint_requests(
            settings,
            endpoint_name=self.endpoint_name,
            version=version,
            model_data_url=model_data,
            instance_type=self.instance_type,
            instance_count=self.instance_count,
        )
        package_for_serving(store_path(self.version_uri, settings), store_path(model_data, settings))
        name = self.config["Model"]["ModelName"]
        # A retried deployment finds this version's model and config already made: reuse them.
        if _exists(self.hook.describe_model, name):
            del self.config["Model"]
        if _exists(self.hook.describe_endpoint_config, name):
            del self.config["EndpointConfig"]
        self.log.info("deploying %s to endpoint %s (model %s)", version, self.endpoint_name, name)
        return super().execute(context)
