"""``SageMakerTrainOperator``: the SageMaker training branch, in every profile.

``aws``: builds the ``CreateTrainingJob`` request from the workload spec at run time, stages and
uploads the script-mode source tarball, and lets the provider's ``SageMakerTrainingOperator``
create the job and wait for it (deferred to the triggerer by default). ``local``: trains the
same entrypoint under SageMaker's on-disk contract in the image's virtualenv. Both then unpack
the job's ``model.tar.gz`` into the spec's ``model_uri`` through the same code. The task links
to the job in the SageMaker console and to its CloudWatch logs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink
from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.sdk.exceptions import AirflowException

from eksml.exits import exit_code_in, fail_for_good
from eksml.sagemaker.contract import unpack_model_artifact
from eksml.sagemaker.images import training_image
from eksml.sagemaker.instances import DEFAULT_TRAINING_TYPE, DEFAULT_USE_SPOT
from eksml.sagemaker.request import (
    build_training_request,
    default_output_uri,
    resolve_compute,
    sagemaker_job_name,
    source_tarball_uri,
    spec_framework,
    spec_locations,
)
from eksml.sagemaker.triggers import SageMakerTrainingTrigger, stop_training_job
from eksml.settings import AwsProviderSettingsMixin, Settings, parse_bool
from eksml.specs import WorkloadSpec, coerce_spec
from eksml.storage import store_path

if TYPE_CHECKING:
    from airflow.sdk import Context

_TAG_UNSAFE = re.compile(r"[^\w\s.:/=+\-@]")
#: Time a job spends outside its stopping condition: instance provisioning, image and data
#: download before training starts, and the model upload after it.
JOB_OVERHEAD_S = 3600


# --- task links ------------------------------------------------------------------------------
# The amazon provider ships a SageMaker link for transform jobs only, so these two follow its
# BaseAwsLink (XCom-persisted, partition-aware console domain) for training jobs. SageMaker
# writes a job's logs to /aws/sagemaker/TrainingJobs in streams named <job>/algo-<n>-<epoch>,
# so the log link filters the group by the job-name prefix.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class SageMakerTrainingJobLink(BaseAwsLink):
    """The training job's page in the SageMaker console."""

    name = "SageMaker Training Job"
    key = "eksml_sagemaker_training_job"
    format_str = BASE_AWS_CONSOLE_LINK + "/sagemaker/home?region={region_name}#/jobs/{job_name}"


class SageMakerTrainingLogsLink(BaseAwsLink):
    """The job's log streams in CloudWatch Logs."""

    name = "SageMaker Training Logs"
    key = "eksml_sagemaker_training_logs"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/cloudwatch/home?region={region_name}#logStream:group="
        + LOG_GROUP
        + ";prefix={job_name};streamFilter=typeLogStreamPrefix"
    )


# --- script-mode source ----------------------------------------------------------------------
# Our Dockerfiles copy images/<image>/ and images/common/trainkit side by side; the staged
# folder has the same layout, so `import trainkit` and the entrypoint's sibling modules resolve
# the same way in the Deep Learning Container. Its requirements.txt holds only what the DLC
# lacks (the image's own requirements would reinstall the framework).
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "Dockerfile*", "requirements*", "*.sh", ".*")


def stage_source_dir(image: str, images_dir: str | Path, dest: str | Path, requirements: Iterable[str] = ()) -> Path:
    """Copy ``images/<image>/`` code and ``images/common/trainkit`` into ``dest``; return ``dest``."""
    images = Path(images_dir)
    src = images / image
    trainkit = images / "common" / "trainkit"
    if not src.is_dir():
        raise FileNotFoundError(f"no image folder {src}")
    if not (trainkit / "__init__.py").is_file():
        raise FileNotFoundError(f"no trainkit package at {trainkit}")
    dest = Path(dest)
    shutil.copytree(src, dest, ignore=_SKIP, dirs_exist_ok=True)
    shutil.copytree(trainkit, dest / "trainkit", ignore=_SKIP, dirs_exist_ok=True)
    lines = [line.strip() for line in requirements if line.strip()]
    if lines:
        (dest / "requirements.txt").write_text("\n".join(lines) + "\n")
    return dest


# --- the operator ----------------------------------------------------------------------------


def job_wait_s(stopping: Mapping[str, Any], task_timeout: timedelta | None) -> int:
    """How long to wait for a job: as long as SageMaker may let it run, within the task's timeout.

    ``MaxWaitTimeInSeconds`` (spot) already includes the runtime; otherwise the job may train
    ``MaxRuntimeInSeconds``; either way plus :data:`JOB_OVERHEAD_S`. A poll count is derived
    from this, never the other way round (the provider's default of 60 polls ends after 30 min).
    """
    bound = int(stopping.get("MaxWaitTimeInSeconds") or stopping["MaxRuntimeInSeconds"]) + JOB_OVERHEAD_S
    if task_timeout is not None:
        bound = min(bound, int(task_timeout.total_seconds()))
    return bound


def _as_optional_int(value: Any) -> int | None:
    return None if value in (None, "", "None") else int(value)


class SageMakerTrainOperator(AwsProviderSettingsMixin, SageMakerTrainingOperator):
    """Train a workload spec on SageMaker (``aws``) or under its contract locally (``local``).

    :param spec: the training spec, its dict form or that dict as text (templated; usually from
        XCom, like the Kubernetes training operators' ``spec``), checked by ``specs.coerce_spec``.
    :param instance_type: ``ml.*`` training instance type (see ``eksml.sagemaker.instances``);
        default the run's ``sagemaker_instance_type`` param, else the form's default
        (``instances.DEFAULT_TRAINING_TYPE``).
    :param instance_count: instances; default the spec's replicas.
    :param use_spot: managed spot training (checkpoints to the spec's ``checkpoint_uri``);
        default the run's ``sagemaker_use_spot`` param, else the form's default (on).
    :param max_runtime_s: ``StoppingCondition.MaxRuntimeInSeconds``.
    :param max_wait_s: spot only; default twice ``max_runtime_s``.
    :param image_source: ``dlc`` (AWS Deep Learning Container, script mode) or ``project`` (our image).
    :param settings: project settings; default resolved at run time (``eksml.settings.resolve_settings``).
    Other keyword arguments go to ``SageMakerTrainingOperator`` (``deferrable`` defaults to
    Airflow's ``[operators] default_deferrable``; ``aws_conn_id`` and ``region_name`` to the settings').
    """

    template_fields: Sequence[str] = (
        *SageMakerTrainingOperator.template_fields,
        "spec",
        "instance_type",
        "instance_count",
        "use_spot",
        "max_runtime_s",
        "max_wait_s",
        "image_source",
    )
    operator_extra_links = (SageMakerTrainingJobLink(), SageMakerTrainingLogsLink())
    ui_color = "#f3e1c7"

    def __init__(
        self,
        *,
        spec: WorkloadSpec | Mapping[str, Any] | str,
        instance_type: str | None = None,
        instance_count: int | str | None = None,
        use_spot: bool | str | None = None,
        max_runtime_s: int | str = 24 * 3600,
        max_wait_s: int | str | None = None,
        image_source: str = "dlc",
        processes_per_host: int | None = None,
        volume_size_gb: int = 50,
        output_uri: str | None = None,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        self.note_given_aws_arguments(kwargs)
        kwargs.setdefault("check_if_job_exists", True)
        kwargs.setdefault("action_if_job_exists", "fail")  # names are unique per try already
        super().__init__(config={}, **kwargs)
        self.spec = spec
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.use_spot = use_spot
        self.max_runtime_s = max_runtime_s
        self.max_wait_s = max_wait_s
        self.image_source = image_source
        self.processes_per_host = processes_per_host
        self.volume_size_gb = volume_size_gb
        self.output_uri = output_uri
        self.settings = settings
        self._job_name: str | None = None
        self._runner = None

    # --- configuration --------------------------------------------------------------------
    def _job_name_for(self, context: Context, spec: WorkloadSpec) -> str:
        ti = context["ti"]
        return sagemaker_job_name(ti.dag_id, context["run_id"], ti.try_number, spec_framework(spec))

    def _tags(self, context: Context) -> dict[str, str]:
        ti = context["ti"]
        return {
            "eksml/dag-id": ti.dag_id,
            "eksml/task-id": ti.task_id,
            "eksml/dag-run-id": _TAG_UNSAFE.sub("_", context["run_id"])[:256],
            "eksml/try-number": str(ti.try_number),
        }

    def _spec(self) -> WorkloadSpec:
        return coerce_spec(self.spec)

    def _instance_type(self, context: Context) -> str:
        chosen = self.instance_type or (context.get("params") or {}).get("sagemaker_instance_type")
        return str(chosen or DEFAULT_TRAINING_TYPE)

    def _use_spot(self, context: Context) -> bool:
        chosen = self.use_spot if self.use_spot is not None else (context.get("params") or {}).get("sagemaker_use_spot")
        return parse_bool(chosen) if chosen is not None else DEFAULT_USE_SPOT

    def build_request(self, context: Context, settings: Settings, spec: WorkloadSpec) -> dict[str, Any]:
        """The validated ``CreateTrainingJob`` request for this try (no API call)."""
        job_name = self._job_name_for(context, spec)
        output_uri = self.output_uri or default_output_uri(spec, settings)
        return build_training_request(
            spec,
            settings,
            instance_type=self._instance_type(context),
            instance_count=_as_optional_int(self.instance_count),
            job_name=job_name,
            output_s3_uri=output_uri,
            use_spot=self._use_spot(context),
            max_runtime_s=int(self.max_runtime_s),
            max_wait_s=_as_optional_int(self.max_wait_s),
            tags=self._tags(context),
            image_source=self.image_source,  # type: ignore[arg-type]
            source_s3_uri=source_tarball_uri(output_uri, job_name) if self.image_source == "dlc" else None,
            processes_per_host=self.processes_per_host,
            volume_size_gb=self.volume_size_gb,
        )

    # --- run ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        settings = self.resolved_settings()
        spec = self._spec()
        if settings.profile == "local":
            return self._execute_local(context, settings, spec)
        self.config = self.build_request(context, settings, spec)
        self._job_name = self.config["TrainingJobName"]
        wait_s = job_wait_s(self.config["StoppingCondition"], self.execution_timeout)
        self.max_ingestion_time = wait_s  # the synchronous wait, and the deferral's timeout
        self.max_attempts = math.ceil(wait_s / self.check_interval) + 1  # the trigger's polls
        self.log.info(
            "waiting up to %d s for %s (stopping condition %s, task timeout %s)",
            wait_s,
            self._job_name,
            self.config["StoppingCondition"],
            self.execution_timeout,
        )
        self._persist_links(context)
        if self.image_source != "dlc":
            return self._finish(settings, spec, self._create_and_wait(context)["Training"])
        with tempfile.TemporaryDirectory(prefix="sm-source-") as tmp:
            staged = stage_source_dir(
                spec.image,
                settings.images_dir,
                Path(tmp) / "source",
                training_image(spec_framework(spec)).source_requirements,
            )
            source_uri = json.loads(self.config["HyperParameters"]["sagemaker_submit_directory"])
            bucket, key = source_uri[len("s3://") :].split("/", 1)
            # The provider's S3Operations tars the folder's entries at the archive root and uploads it.
            upload = {"Path": str(staged), "Bucket": bucket, "Key": key, "Tar": True}
            self.config["S3Operations"] = {"S3Upload": [upload]}
            result = self._create_and_wait(context)  # defers (TaskDeferred) while the job runs
        return self._finish(settings, spec, result["Training"])

    def _create_and_wait(self, context: Context) -> dict[str, Any]:
        """The provider's create-and-wait; its synchronous wait raises on a Failed job with the
        ``FailureReason`` in the message, where the entrypoint's exit status is quoted."""
        try:
            return super().execute(context)
        except AirflowException as exc:
            if "Failed" in str(exc) or "failed because" in str(exc):
                fail_for_good(str(exc), exit_code_in(str(exc)), exc)
            raise

    def defer(
        self, *, trigger: Any, method_name: str, kwargs: dict[str, Any] | None = None, timeout: Any = None
    ) -> None:
        """Wait with the provider's trigger, in the subclass that stops the job when the task is killed."""
        if isinstance(trigger, SageMakerTrigger) and not isinstance(trigger, SageMakerTrainingTrigger):
            trigger = SageMakerTrainingTrigger.from_trigger(trigger)
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        settings = self.resolved_settings()
        spec = self._spec()
        self._job_name = (event or {}).get("job_name") or self._job_name_for(context, spec)
        if not event or event.get("status") != "success":
            self.log.error("SageMaker wait for %s ended with %s", self._job_name, event)
            return self._finish(settings, spec, self.hook.describe_training_job(self._job_name))
        return self._finish(settings, spec, super().execute_complete(context, event)["Training"])

    def _execute_local(self, context: Context, settings: Settings, spec: WorkloadSpec) -> dict[str, Any]:
        from eksml.local.runner import LocalRunner
        from eksml.sagemaker.contract import run_training_locally

        # Same instance checks as on AWS, so a run that would be refused there is refused here.
        resolve_compute(
            spec, self._instance_type(context), _as_optional_int(self.instance_count), self.processes_per_host
        )
        self._job_name = self._job_name_for(context, spec)
        # A local job has no console page: empty link values, as the task runner looks every
        # extra link up when the task ends and a missing one logs "ERROR XCom not found".
        for link in self.operator_extra_links:
            context["ti"].xcom_push(key=link.key, value=None)
        self._runner = LocalRunner(settings, self.log)
        result = run_training_locally(
            spec, settings, job_name=self._job_name, runner=self._runner, output_uri=self.output_uri
        )
        self.log.info("local SageMaker-contract training %s completed", self._job_name)
        return self._register(settings, spec, self._job_name, "Completed", result.model_artifact)

    def _finish(self, settings: Settings, spec: WorkloadSpec, description: Mapping[str, Any]) -> dict[str, Any]:
        """Log the final state; fail unless Completed; then register the model artifact."""
        name = description.get("TrainingJobName", self._job_name)
        status = description.get("TrainingJobStatus")
        reason = description.get("FailureReason")
        self.log.info(
            "SageMaker training job %s: %s (%s)%s; billable seconds: %s",
            name,
            status,
            description.get("SecondaryStatus"),
            f"; failure reason: {reason}" if reason else "",
            description.get("BillableTimeInSeconds"),
        )
        if status in self.hook.non_terminal_states:  # the wait timed out: do not leave it running
            stop_training_job(self.hook, name)
            raise AirflowException(f"SageMaker training job {name} still {status} when the wait ended; stop requested")
        if status != "Completed":
            message = f"SageMaker training job {name} ended {status}: {reason or 'no reason given'}"
            if status == "Failed":  # SageMaker quotes the entrypoint's status in FailureReason
                fail_for_good(message, exit_code_in(reason))
            raise AirflowException(message)
        artifact = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if not artifact:
            raise AirflowException(f"SageMaker training job {name} completed without ModelArtifacts")
        return self._register(settings, spec, name, status, artifact)

    def _register(
        self, settings: Settings, spec: WorkloadSpec, job_name: str, status: str, artifact: str
    ) -> dict[str, Any]:
        staging = spec_locations(spec).model_uri
        files = unpack_model_artifact(store_path(artifact, settings), store_path(staging, settings))
        self.log.info("unpacked %s into %s: %d file(s)", artifact, staging, len(files))
        return {
            "training_job_name": job_name,
            "status": status,
            "framework": spec_framework(spec),
            "model_artifact": artifact,
            "staging_uri": staging,
            "files": files,
            "profile": settings.profile,
        }

    def _persist_links(self, context: Context) -> None:
        kwargs = {
            "region_name": self.hook.conn_region_name,
            "aws_partition": self.hook.conn_partition,
            "job_name": self._job_name,
        }
        SageMakerTrainingJobLink.persist(context=context, operator=self, **kwargs)
        SageMakerTrainingLogsLink.persist(context=context, operator=self, **kwargs)

    def on_kill(self) -> None:
        """Stop the local process, or the SageMaker job this try started."""
        if self._runner is not None:
            self._runner.kill()
        elif self._job_name:
            stop_training_job(self.hook, self._job_name)
