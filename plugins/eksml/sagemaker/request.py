"""Resolve one try's SageMaker training job from its :class:`~eksml.specs.WorkloadSpec`.

The spec stays the one source of truth, read by name: its ``data_uri`` location becomes the
``training`` channel, its ``checkpoint_uri`` the checkpoint S3 location, its ``model_uri`` the
staging folder the artifact is unpacked into after the job, and its hyperparameters SageMaker's
``HyperParameters`` (keyed as the entrypoint's flags, which is how the training toolkit passes
them on). Everything is checked here, before any API call: a request this module returns is one
SageMaker should accept. SageMaker's resource names are made and checked here too.
:func:`resolve_training_job` decides a try's whole job (name, instances, spot, locations, tags,
request) in one call, from the spec, the run's params and the settings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eksml.errors import InvalidInput
from eksml.layout import Area, area_uri
from eksml.sagemaker.images import training_image_uri
from eksml.sagemaker.instances import DEFAULT_TRAINING_TYPE, DEFAULT_USE_SPOT, instance_gpus
from eksml.settings import Settings, parse_bool
from eksml.specs import TRAINING_IMAGES, WorkloadSpec, arg_text, coerce_spec, flag

ImageSource = Literal["dlc", "project"]

#: Where SageMaker lays out the training contract inside the container.
OPT_ML = "/opt/ml"
CHANNEL = "training"
CHECKPOINT_LOCAL_PATH = f"{OPT_ML}/checkpoints"
#: 28 days: SageMaker's ceiling for MaxRuntimeInSeconds and MaxWaitTimeInSeconds.
MAX_RUNTIME_LIMIT_S = 28 * 24 * 3600

ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_TAG_CHARS = r"\w\s.:/=+\-@"  # what SageMaker accepts in a tag key or value
_TAG_TEXT = re.compile(rf"^[{_TAG_CHARS}]*$")
_TAG_UNSAFE = re.compile(rf"[^{_TAG_CHARS}]")
_JSON_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")

# --- names ------------------------------------------------------------------------------------
# SageMaker names (training jobs and the like) must match
# ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$``. Run ids hold ``:``, ``+``, ``_`` and are long, so a
# readable slug is cut to fit and a hash of the unaltered inputs keeps two names apart even when
# their slugs collide or are truncated the same way.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_NAME_LENGTH = 63
_HASH_LENGTH = 8


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")


def unique_name(*parts: object) -> str:
    """A valid SageMaker name: the slug of ``parts`` cut to fit, then a hash of all of them."""
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:_HASH_LENGTH]
    readable = _slug("-".join(str(p) for p in parts))[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-")
    return f"{readable}-{digest}" if readable else digest


def sagemaker_job_name(dag_id: str, run_id: str, try_number: int, framework: str) -> str:
    """Training job name for one try of one run: ``<dag>-<framework>-t<try>-<run>-<hash>``."""
    if try_number < 0:
        raise ValueError(f"try_number must be >= 0, got {try_number}")
    return unique_name(dag_id, framework, f"t{try_number}", run_id)


def validate_name(name: str, what: str = "training job name") -> str:
    """Return ``name`` if SageMaker accepts it, else raise ValueError saying why."""
    if not NAME_PATTERN.match(name or ""):
        raise ValueError(
            f"invalid SageMaker {what} {name!r}: 1-{MAX_NAME_LENGTH} characters, letters, digits "
            f"and hyphens, starting and ending with a letter or digit"
        )
    return name


# --- the training request ---------------------------------------------------------------------


class SageMakerRequestError(InvalidInput):
    """The training request would be rejected by SageMaker, or would not do what was asked."""


def check_role_arn(role_arn: str) -> str:
    """The SageMaker execution role, or an error that names the setting to set."""
    how = (
        "set EKSML_SAGEMAKER_ROLE_ARN (or sagemaker_role_arn in the eksml_settings Variable) to the "
        "ARN of the SageMaker execution role; its policy: python -m eksml.cluster.eksctl iam sagemaker"
    )
    if not role_arn:
        raise SageMakerRequestError(f"sagemaker_role_arn is not set: {how}")
    if not ROLE_ARN_PATTERN.match(role_arn):
        raise SageMakerRequestError(f"sagemaker_role_arn is not an IAM role ARN: {role_arn!r}; {how}")
    return role_arn


@dataclass(frozen=True)
class SpecLocations:
    """Where the spec reads data, writes its model and keeps checkpoints."""

    data_uri: str
    model_uri: str
    checkpoint_uri: str | None

    @property
    def version(self) -> str:
        """Last segment of the model location: the model version this run produces."""
        return self.model_uri.rstrip("/").rsplit("/", 1)[-1]


def spec_locations(spec: WorkloadSpec) -> SpecLocations:
    """The spec's named locations; data and model are required."""
    named = spec.locations
    missing = [k for k in ("data_uri", "model_uri") if not named.get(k)]
    if missing:
        raise SageMakerRequestError(f"spec {spec.name} has no location {', '.join(missing)}")
    return SpecLocations(named["data_uri"], named["model_uri"], named.get("checkpoint_uri"))


def _hyperparameter_value(value: Any) -> str:
    """SageMaker stores every value as a string; numbers stay bare, text is JSON-quoted (as the SDK does)."""
    text = arg_text(value)
    return text if _JSON_NUMBER.match(text) else json.dumps(text)


def spec_hyperparameters(spec: WorkloadSpec) -> dict[str, str]:
    """The spec's hyperparameters, keyed as the entrypoint's flags (``batch-size``: ``"128"``).

    The training toolkit passes each one on as ``--<key> <value>``; a spec with free ``args``
    is refused, since nothing would carry them.
    """
    if spec.args:
        raise SageMakerRequestError(
            f"spec {spec.name}: free arguments {list(spec.args)!r} have no SageMaker form; "
            f"give them to the spec as named hyperparameters"
        )
    return {flag(name)[2:]: _hyperparameter_value(value) for name, value in spec.hyperparameters.items()}


def spec_framework(spec: WorkloadSpec) -> str:
    """The training framework the spec names (it picks the Deep Learning Container)."""
    if spec.framework not in TRAINING_IMAGES:
        raise SageMakerRequestError(
            f"spec {spec.name} is not a training workload: framework {spec.framework!r}, "
            f"expected one of {', '.join(TRAINING_IMAGES)}"
        )
    return spec.framework


def default_output_uri(spec: WorkloadSpec, settings: Settings) -> str:
    """``<store>/sagemaker/<model>/<version>``: beside the staging folder, never inside it.

    SageMaker writes ``<output>/<job>/output/model.tar.gz`` (and the source tarball goes to
    ``<output>/<job>/source/``); keeping that out of the staging folder means registration copies
    only the unpacked model.
    """
    return area_uri(settings.store_uri, Area.SAGEMAKER, settings.model_name, spec_locations(spec).version)


def source_tarball_uri(output_s3_uri: str, job_name: str) -> str:
    return f"{output_s3_uri.rstrip('/')}/{job_name}/source/sourcedir.tar.gz"


def model_artifact_uri(output_s3_uri: str, job_name: str) -> str:
    """Where SageMaker puts the job's ``model.tar.gz`` (``ModelArtifacts.S3ModelArtifacts``)."""
    return f"{output_s3_uri.rstrip('/')}/{job_name}/output/model.tar.gz"


def require_s3(name: str, uri: str | None) -> str:
    if not uri or not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise SageMakerRequestError(
            f"{name} must be an s3:// URI for SageMaker, got {uri!r} (the aws profile needs an s3:// store_uri)"
        )
    return uri


def _positive_int(name: str, value: Any, *, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SageMakerRequestError(f"{name} must be an integer, got {value!r}") from None
    if number < 1 or (maximum is not None and number > maximum):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise SageMakerRequestError(f"{name} must be >= 1{bound}, got {number}")
    return number


def _tags(spec: WorkloadSpec, tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    merged = {**dict(spec.labels), **dict(tags or {})}
    if len(merged) > 50:
        raise SageMakerRequestError(f"at most 50 tags, got {len(merged)}")
    result = []
    for key, value in merged.items():
        value = str(value)
        if not key or len(key) > 128 or key.startswith("aws:") or not _TAG_TEXT.match(key):
            raise SageMakerRequestError(f"invalid tag key {key!r}")
        if len(value) > 256 or not _TAG_TEXT.match(value):
            raise SageMakerRequestError(f"invalid value {value!r} of tag {key!r}")
        result.append({"Key": key, "Value": value})
    return result


def _vpc_config(settings: Settings) -> dict[str, list[str]] | None:
    subnets, groups = list(settings.sagemaker_subnets), list(settings.sagemaker_security_groups)
    if not subnets and not groups:
        return None
    if not subnets or not groups:
        raise SageMakerRequestError("sagemaker_subnets and sagemaker_security_groups must be set together")
    return {"SecurityGroupIds": groups, "Subnets": subnets}


def project_image_environment() -> dict[str, str]:
    """The ``SM_*`` paths SageMaker's training toolkit would export, for an image without the toolkit."""
    return {
        "SM_MODEL_DIR": f"{OPT_ML}/model",
        "SM_CHANNEL_TRAINING": f"{OPT_ML}/input/data/{CHANNEL}",
        "SM_OUTPUT_DATA_DIR": f"{OPT_ML}/output/data",
        "SM_INPUT_CONFIG_DIR": f"{OPT_ML}/input/config",
        "SM_CHECKPOINT_DIR": CHECKPOINT_LOCAL_PATH,
    }


@dataclass(frozen=True)
class Compute:
    """Instances of a training job and the Horovod processes on each."""

    instance_type: str
    gpus: int
    instance_count: int
    processes_per_host: int


def resolve_compute(
    spec: WorkloadSpec, instance_type: str, instance_count: int | None = None, processes_per_host: int | None = None
) -> Compute:
    """Check the instance type and counts against the spec (defaults: its replicas and slots)."""
    try:
        gpus = instance_gpus(instance_type)
    except ValueError as exc:
        raise SageMakerRequestError(str(exc)) from None
    count = _positive_int("instance_count", spec.replicas if instance_count is None else instance_count)
    if not spec.distributed and count != 1:
        raise SageMakerRequestError(f"{spec.name} runs on one instance; instance_count must be 1, got {count}")
    if spec.resources.gpus > gpus:
        raise SageMakerRequestError(
            f"spec {spec.name} asks {spec.resources.gpus} GPU(s) per replica; {instance_type} has {gpus} "
            f"(choose a GPU instance type or train with gpus=0)"
        )
    per_host = _positive_int(
        "processes_per_host", spec.slots_per_replica if processes_per_host is None else processes_per_host
    )
    if spec.distributed and gpus and per_host > gpus:
        raise SageMakerRequestError(
            f"{per_host} Horovod processes per host need {per_host} GPUs; {instance_type} has {gpus}"
        )
    return Compute(instance_type, gpus, count, per_host)


def _stopping_condition(use_spot: bool, max_runtime_s: Any, max_wait_s: Any) -> dict[str, int]:
    max_runtime = _positive_int("max_runtime_s", max_runtime_s, maximum=MAX_RUNTIME_LIMIT_S)
    stopping = {"MaxRuntimeInSeconds": max_runtime}
    if use_spot:
        default_wait = min(2 * max_runtime, MAX_RUNTIME_LIMIT_S)
        wait = _positive_int(
            "max_wait_s", default_wait if max_wait_s is None else max_wait_s, maximum=MAX_RUNTIME_LIMIT_S
        )
        if wait < max_runtime:
            raise SageMakerRequestError(f"max_wait_s ({wait}) must be >= max_runtime_s ({max_runtime})")
        stopping["MaxWaitTimeInSeconds"] = wait
    elif max_wait_s is not None:
        raise SageMakerRequestError("max_wait_s applies to managed spot training only (use_spot=True)")
    return stopping


def _algorithm(
    spec: WorkloadSpec,
    settings: Settings,
    *,
    framework: str,
    image_source: str,
    source_s3_uri: str | None,
    job_name: str,
    compute: Compute,
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """AlgorithmSpecification, HyperParameters and Environment for the chosen image."""
    hyperparameters = spec_hyperparameters(spec)
    environment = dict(spec.env)
    if image_source == "dlc":
        source = require_s3("source_s3_uri", source_s3_uri)
        try:
            image = training_image_uri(framework, settings.region, gpu=compute.gpus > 0)
        except ValueError as exc:
            raise SageMakerRequestError(str(exc)) from None
        hyperparameters.update(
            {
                "sagemaker_program": json.dumps(spec.script),
                "sagemaker_submit_directory": json.dumps(source),
                "sagemaker_region": json.dumps(settings.region),
                "sagemaker_job_name": json.dumps(job_name),
                "sagemaker_container_log_level": "20",
            }
        )
        if spec.distributed:
            hyperparameters.update(
                {
                    "sagemaker_mpi_enabled": "true",
                    "sagemaker_mpi_num_of_processes_per_host": str(compute.processes_per_host),
                    "sagemaker_mpi_custom_mpi_options": json.dumps(""),
                }
            )
        return {"TrainingImage": image, "TrainingInputMode": "File"}, hyperparameters, environment
    if image_source == "project":
        if spec.distributed and compute.instance_count * compute.processes_per_host > 1:
            raise SageMakerRequestError(
                "Horovod across processes needs SageMaker's MPI launcher, which the Deep Learning "
                "Containers carry: use image_source='dlc' (or one process on one instance)"
            )
        environment.update(project_image_environment())
        return (
            {
                "TrainingImage": settings.image(spec.image),
                "TrainingInputMode": "File",
                "ContainerEntrypoint": spec.container_command(),
            },
            hyperparameters,
            environment,
        )
    raise SageMakerRequestError(f"image_source must be 'dlc' or 'project', got {image_source!r}")


def build_training_request(
    spec: WorkloadSpec,
    settings: Settings,
    *,
    instance_type: str,
    instance_count: int | None = None,
    job_name: str,
    data_s3_uri: str | None = None,
    output_s3_uri: str | None = None,
    checkpoint_s3_uri: str | None = None,
    use_spot: bool = False,
    max_runtime_s: int = 24 * 3600,
    max_wait_s: int | None = None,
    tags: Mapping[str, str] | None = None,
    image_source: ImageSource = "dlc",
    source_s3_uri: str | None = None,
    processes_per_host: int | None = None,
    volume_size_gb: int = 50,
) -> dict[str, Any]:
    """The ``config`` of ``SageMakerTrainingOperator`` for ``spec``.

    Locations default to the spec's own (``--data-uri``, ``--checkpoint-uri``) and to
    :func:`default_output_uri`. ``image_source="dlc"`` (default) runs ``spec.script`` in script
    mode on the framework's Deep Learning Container from ``source_s3_uri``
    (``sourcedir.tar.gz``); ``"project"`` runs our own image (``settings.image(spec.image)``)
    with the toolkit's ``SM_*`` variables set explicitly. Horovod specs get SageMaker's MPI
    distribution with ``processes_per_host`` (default: the spec's slots per replica) processes
    on each of ``instance_count`` (default: the spec's replicas) instances. With ``use_spot``,
    ``max_wait_s`` defaults to twice ``max_runtime_s``.
    """
    framework = spec_framework(spec)
    locations = spec_locations(spec)
    try:
        validate_name(job_name)
    except ValueError as exc:
        raise SageMakerRequestError(str(exc)) from None
    compute = resolve_compute(spec, instance_type, instance_count, processes_per_host)

    data_uri = require_s3("data_s3_uri", data_s3_uri or locations.data_uri).rstrip("/") + "/"
    output_uri = require_s3("output_s3_uri", output_s3_uri or default_output_uri(spec, settings))
    checkpoint_uri = checkpoint_s3_uri or locations.checkpoint_uri
    if use_spot and not checkpoint_uri:
        raise SageMakerRequestError("managed spot training needs a checkpoint S3 URI so an interrupted job resumes")
    if checkpoint_uri:
        require_s3("checkpoint_s3_uri", checkpoint_uri)
    stopping = _stopping_condition(use_spot, max_runtime_s, max_wait_s)
    check_role_arn(settings.sagemaker_role_arn)

    algorithm, hyperparameters, environment = _algorithm(
        spec,
        settings,
        framework=framework,
        image_source=image_source,
        source_s3_uri=source_s3_uri,
        job_name=job_name,
        compute=compute,
    )
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": algorithm,
        "RoleArn": settings.sagemaker_role_arn,
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": data_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
                "CompressionType": "None",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": output_uri},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": compute.instance_count,
            "VolumeSizeInGB": _positive_int("volume_size_gb", volume_size_gb, maximum=16384),
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": bool(use_spot),
        "Environment": environment,
        "Tags": _tags(spec, tags),
    }
    if checkpoint_uri:
        request["CheckpointConfig"] = {"S3Uri": checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    vpc = _vpc_config(settings)
    if vpc:
        request["VpcConfig"] = vpc
    return request


# --- one try's job, resolved once ---------------------------------------------------------------


@dataclass(frozen=True)
class TrainingJob:
    """One try's training job, everything about it decided before anything runs.

    The operator executes this value as it is: ``request`` is the checked ``CreateTrainingJob``
    request, or ``None`` where no SageMaker job is created (the local profile trains the same
    job under SageMaker's contract on the worker).
    """

    spec: WorkloadSpec
    name: str
    framework: str
    compute: Compute
    use_spot: bool
    locations: SpecLocations
    output_uri: str
    #: Where the script-mode source tarball goes (``image_source="dlc"``), else None.
    source_uri: str | None
    tags: Mapping[str, str]
    request: Mapping[str, Any] | None


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "", "None") else int(value)


def try_tags(context: Mapping[str, Any]) -> dict[str, str]:
    """Tags naming the DAG, task, run and try a job belongs to."""
    ti = context["ti"]
    return {
        "eksml/dag-id": ti.dag_id,
        "eksml/task-id": ti.task_id,
        "eksml/dag-run-id": _TAG_UNSAFE.sub("_", context["run_id"])[:256],
        "eksml/try-number": str(ti.try_number),
    }


def resolve_training_job(
    spec: WorkloadSpec | Mapping[str, Any] | str,
    settings: Settings,
    context: Mapping[str, Any],
    *,
    instance_type: str | None,
    instance_count: int | str | None,
    use_spot: bool | str | None,
    max_runtime_s: int | str,
    max_wait_s: int | str | None,
    image_source: str,
    processes_per_host: int | None,
    volume_size_gb: int,
    output_uri: str | None,
    with_request: bool,
) -> TrainingJob:
    """The job of the try in ``context`` (its ``ti``, ``run_id`` and ``params``), checked.

    The operator's arguments (its defaults are the only ones), which may be templated strings.
    ``instance_type`` and ``use_spot`` left ``None`` take
    the run's ``sagemaker_instance_type`` and ``sagemaker_use_spot`` params, else the trigger
    form's defaults; ``output_uri`` defaults to :func:`default_output_uri`. The instance checks
    run in every profile, so a run SageMaker would refuse is refused locally too;
    ``with_request`` adds the ``CreateTrainingJob`` request (S3 locations, role, stopping condition).
    """
    workload = coerce_spec(spec)
    framework = spec_framework(workload)
    locations = spec_locations(workload)
    params = context.get("params") or {}
    chosen_type = str(instance_type or params.get("sagemaker_instance_type") or DEFAULT_TRAINING_TYPE)
    spot = use_spot if use_spot is not None else params.get("sagemaker_use_spot")
    spot = parse_bool(spot) if spot is not None else DEFAULT_USE_SPOT
    count = _optional_int(instance_count)
    compute = resolve_compute(workload, chosen_type, count, processes_per_host)
    ti = context["ti"]
    name = sagemaker_job_name(ti.dag_id, context["run_id"], ti.try_number, framework)
    output = output_uri or default_output_uri(workload, settings)
    source = source_tarball_uri(output, name) if image_source == "dlc" else None
    tags = try_tags(context)
    request = None
    if with_request:
        request = build_training_request(
            workload,
            settings,
            instance_type=chosen_type,
            instance_count=count,
            job_name=name,
            output_s3_uri=output,
            use_spot=spot,
            max_runtime_s=int(max_runtime_s),
            max_wait_s=_optional_int(max_wait_s),
            tags=tags,
            image_source=image_source,  # type: ignore[arg-type]
            source_s3_uri=source,
            processes_per_host=processes_per_host,
            volume_size_gb=volume_size_gb,
        )
    return TrainingJob(workload, name, framework, compute, spot, locations, output, source, tags, request)
