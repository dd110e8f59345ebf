"""``SageMakerTrainOperator``: the SageMaker training branch, in every profile.

A try's job is resolved once (``request.resolve_training_job``: name, instances, spot,
locations, tags and the ``CreateTrainingJob`` request), then run on the profile's path.
``aws``: stages and uploads the script-mode source tarball and lets the provider's
``SageMakerTrainingOperator`` create the job and wait for it (deferred to the triggerer by
default). ``local``: trains the same entrypoint under SageMaker's on-disk contract in the
image's virtualenv. Both then unpack the job's ``model.tar.gz`` into the spec's ``model_uri``
through the same code. The task links to the job in the SageMaker console and to its
CloudWatch logs.
"""

from __future__ import annotations

import copy
import math
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
from eksml.local.dispatch import ProfileDispatchMixin
from eksml.local.runner import LocalRunner
from eksml.sagemaker.contract import run_training_locally, unpack_model_artifact
from eksml.sagemaker.images import training_image
from eksml.sagemaker.request import TrainingJob, resolve_training_job
from eksml.sagemaker.triggers import SageMakerTrainingTrigger, stop_training_job
from eksml.settings import AwsProviderSettingsMixin, Settings
from eksml.specs import WorkloadSpec
from eksml.storage import store_path

if TYPE_CHECKING:
    from airflow.sdk import Context

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


class SageMakerTrainOperator(ProfileDispatchMixin, AwsProviderSettingsMixin, SageMakerTrainingOperator):
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
        self._runner: LocalRunner | None = None

    def resolve_job(self, context: Context, settings: Settings, *, with_request: bool = True) -> TrainingJob:
        """This try's job from the spec, the run's params and the settings (no API call)."""
        return resolve_training_job(
            self.spec,
            settings,
            context,
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            use_spot=self.use_spot,
            max_runtime_s=self.max_runtime_s,
            max_wait_s=self.max_wait_s,
            image_source=self.image_source,
            processes_per_host=self.processes_per_host,
            volume_size_gb=self.volume_size_gb,
            output_uri=self.output_uri,
            with_request=with_request,
        )

    # --- run ---------------------------------------------------------------------------------
    def execute_remote(self, context: Context, settings: Settings) -> dict[str, Any]:
        """Create the job through the provider's operator and wait for it; register its artifact."""
        job = self.resolve_job(context, settings, with_request=True)
        self._job_name = job.name
        return self._train_on_sagemaker(context, settings, job)

    def execute_local(self, context: Context, settings: Settings) -> dict[str, Any]:
        """Train under SageMaker's contract on the worker (no job, so no request)."""
        job = self.resolve_job(context, settings, with_request=False)
        self._job_name = job.name
        return self._train_locally(context, settings, job)

    def _train_on_sagemaker(self, context: Context, settings: Settings, job: TrainingJob) -> dict[str, Any]:
        self.config = copy.deepcopy(dict(job.request or {}))  # the provider edits its config
        wait_s = job_wait_s(self.config["StoppingCondition"], self.execution_timeout)
        self.max_ingestion_time = wait_s  # the synchronous wait, and the deferral's timeout
        self.max_attempts = math.ceil(wait_s / self.check_interval) + 1  # the trigger's polls
        self.log.info(
            "waiting up to %d s for %s (stopping condition %s, task timeout %s)",
            wait_s,
            job.name,
            self.config["StoppingCondition"],
            self.execution_timeout,
        )
        self._persist_links(context)
        if job.source_uri is None:  # our own image: no source to upload
            return self._finish(settings, job, self._create_and_wait(context)["Training"])
        with tempfile.TemporaryDirectory(prefix="sm-source-") as tmp:
            staged = stage_source_dir(
                job.spec.image,
                settings.images_dir,
                Path(tmp) / "source",
                training_image(job.framework).source_requirements,
            )
            bucket, key = job.source_uri[len("s3://") :].split("/", 1)
            # The provider's S3Operations tars the folder's entries at the archive root and uploads it.
            upload = {"Path": str(staged), "Bucket": bucket, "Key": key, "Tar": True}
            self.config["S3Operations"] = {"S3Upload": [upload]}
            result = self._create_and_wait(context)  # defers (TaskDeferred) while the job runs
        return self._finish(settings, job, result["Training"])

    def _train_locally(self, context: Context, settings: Settings, job: TrainingJob) -> dict[str, Any]:
        """Train under SageMaker's contract on the worker; register the archive it leaves."""
        # A local job has no console page: empty link values, as the task runner looks every
        # extra link up when the task ends and a missing one logs "ERROR XCom not found".
        for link in self.operator_extra_links:
            context["ti"].xcom_push(key=link.key, value=None)
        self._runner = LocalRunner(settings, self.log)
        result = run_training_locally(
            job.spec, settings, job_name=job.name, runner=self._runner, output_uri=job.output_uri
        )
        self.log.info("local SageMaker-contract training %s completed", job.name)
        return self._register(settings, job, job.name, "Completed", result.model_artifact)

    def _create_and_wait(self, context: Context) -> dict[str, Any]:
        """The provider's create-and-wait; its synchronous wait raises on a Failed job with the
        ``FailureReason`` in the message, where the entrypoint's exit status is quoted."""
        try:
            # The provider's execute by name: super() would lead back to ProfileDispatchMixin's.
            return SageMakerTrainingOperator.execute(self, context)
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
        job = self.resolve_job(context, settings, with_request=False)  # the job was created already
        self._job_name = (event or {}).get("job_name") or job.name
        if not event or event.get("status") != "success":
            self.log.error("SageMaker wait for %s ended with %s", self._job_name, event)
            return self._finish(settings, job, self.hook.describe_training_job(self._job_name))
        return self._finish(settings, job, super().execute_complete(context, event)["Training"])

    def _finish(self, settings: Settings, job: TrainingJob, description: Mapping[str, Any]) -> dict[str, Any]:
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
        return self._register(settings, job, name, status, artifact)

    def _register(self, settings: Settings, job: TrainingJob, name: str, status: str, artifact: str) -> dict[str, Any]:
        staging = job.locations.model_uri
        files = unpack_model_artifact(store_path(artifact, settings), store_path(staging, settings))
        self.log.info("unpacked %s into %s: %d file(s)", artifact, staging, len(files))
        return {
            "training_job_name": name,
            "status": status,
            "framework": job.framework,
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
