"""SageMakerTrainOperator without a SageMaker endpoint: bad input stops it before any API call,
the wait uses the trigger that stops the job when the task is killed, a Failed or Stopped job
fails the task with its reason, on_kill stops the job; and the console and log links.

SageMaker answers come from botocore's Stubber on real clients, which checks every request
against the service model (moto does not implement StopTrainingJob)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from types import SimpleNamespace

import pytest
from fixtures.specs import small_training_spec

from eksml.settings import Settings

STORE = "s3://ml-bucket/eksml"
RUN_ID = "manual__2026-11-29T00:00:00+00:00"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
    }.items():
        monkeypatch.setenv(key, value)


def spec_dict(framework: str = "tensorflow") -> dict:
    return small_training_spec(STORE, framework)


def operator(**kw):
    from eksml.sagemaker.operators import SageMakerTrainOperator

    options = dict(
        task_id="train_sagemaker",
        spec=spec_dict(),
        aws_conn_id=None,
        region_name="us-west-2",
        settings=Settings(
            profile="aws",
            store_uri=STORE,
            region="us-west-2",
            sagemaker_role_arn="arn:aws:iam::123456789012:role/eksml-sagemaker",
        ),
    )
    options.update(kw)
    return SageMakerTrainOperator(**options)


def request(op, ctx: dict) -> dict:
    """The ``CreateTrainingJob`` request the operator resolves for the try in ``ctx`` (no API call)."""
    return op.resolve_job(ctx, op.resolved_settings()).request


def context(try_number: int = 1) -> dict:
    ti = SimpleNamespace(dag_id="fashion_mnist_training", task_id="train_sagemaker", try_number=try_number, xcoms={})
    ti.xcom_push = lambda key, value: ti.xcoms.__setitem__(key, value)
    return {"ti": ti, "run_id": RUN_ID}


def stubbed(op):
    """Activate a Stubber on the operator's SageMaker client; the caller queues the expected calls."""
    from botocore.stub import Stubber

    stub = Stubber(op.hook.conn)
    stub.activate()
    return stub


def description(status: str, reason: str | None = None) -> dict:
    now = dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc)
    desc = {
        "TrainingJobName": "job-1",
        "TrainingJobArn": "arn:aws:sagemaker:us-west-2:123456789012:training-job/job-1",
        "ModelArtifacts": {"S3ModelArtifacts": f"{STORE}/sagemaker/fashion-mnist/v1/job-1/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": now,
    }
    if reason:
        desc["FailureReason"] = reason
    return desc


@pytest.mark.parametrize(
    "changes",
    [
        {"instance_type": "ml.bogus.xlarge"},
        {"instance_count": "0"},
        {"use_spot": "true", "max_runtime_s": "3600", "max_wait_s": "60"},
        {"spec": spec_dict("mxnet"), "instance_count": 0},
    ],
)
def test_bad_input_fails_before_any_aws_client_exists(changes: dict) -> None:
    from eksml.sagemaker.request import SageMakerRequestError

    op = operator(**changes)
    with pytest.raises(SageMakerRequestError):
        op.execute(context())
    assert "hook" not in op.__dict__, "an AWS client was created before the request was validated"


def test_request_is_built_from_templated_strings() -> None:
    op = operator(instance_count="1", use_spot="True", max_runtime_s="3600", max_wait_s="7200")
    req = request(op, context(try_number=3))
    assert req["EnableManagedSpotTraining"] is True
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert "-t3-" in req["TrainingJobName"]
    tags = {t["Key"]: t["Value"] for t in req["Tags"]}
    assert tags["eksml/dag-run-id"] == RUN_ID and tags["eksml/try-number"] == "3"
    assert req["HyperParameters"]["sagemaker_submit_directory"] == (
        f'"{STORE}/sagemaker/fashion-mnist/v1/{req["TrainingJobName"]}/source/sourcedir.tar.gz"'
    )


def test_instance_and_spot_default_to_the_run_params() -> None:
    op = operator()
    ctx = {**context(), "params": {"sagemaker_instance_type": "ml.p3.2xlarge", "sagemaker_use_spot": True}}
    req = request(op, ctx)
    assert req["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert req["EnableManagedSpotTraining"] is True
    on_demand = {**context(), "params": {"sagemaker_use_spot": False}}
    assert request(op, on_demand)["EnableManagedSpotTraining"] is False


def test_without_the_param_the_operator_trains_on_the_trigger_forms_default() -> None:
    """A run without the form's param (the API, a DAG of one's own) trains on the type the form
    would have chosen; the form, the validated params and the operator agree on one default."""
    from eksml.params import PARAM_SCHEMAS, TrainingParams

    op = operator()
    plain = request(op, context())
    form = PARAM_SCHEMAS["sagemaker_instance_type"]["default"]
    assert plain["ResourceConfig"]["InstanceType"] == form == TrainingParams().sagemaker_instance_type
    spot = PARAM_SCHEMAS["sagemaker_use_spot"]["default"]
    assert plain["EnableManagedSpotTraining"] is spot is TrainingParams().sagemaker_use_spot


def test_one_resolution_holds_the_whole_job() -> None:
    """Name, instances, spot, locations, tags and the request are decided together, and agree."""
    op = operator(instance_type="ml.g5.xlarge", use_spot="false")
    job = op.resolve_job(context(try_number=2), op.resolved_settings())
    req = job.request
    assert job.name == req["TrainingJobName"] and "-t2-" in job.name
    assert (job.compute.instance_type, job.compute.instance_count) == ("ml.g5.xlarge", 1)
    assert req["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert job.use_spot is False and req["EnableManagedSpotTraining"] is False
    assert json.loads(req["HyperParameters"]["sagemaker_submit_directory"]) == job.source_uri
    assert job.source_uri.startswith(job.output_uri) and req["OutputDataConfig"]["S3OutputPath"] == job.output_uri
    assert job.locations.model_uri == f"{STORE}/staging/fashion-mnist/v1" and job.framework == "tensorflow"
    assert set(job.tags.items()) <= {(t["Key"], t["Value"]) for t in req["Tags"]}
    own_image = operator(image_source="project")
    assert own_image.resolve_job(context(), own_image.resolved_settings()).source_uri is None


def test_the_local_profile_trains_the_resolved_job_without_aws(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """``local`` resolves the same job without a request (no role, no S3 store) and runs it under
    the contract; the instance checks still apply; no AWS client is made."""
    from eksml.sagemaker import operators
    from eksml.sagemaker.contract import LocalTrainingResult
    from eksml.sagemaker.request import SageMakerRequestError

    store = tmp_path.as_uri()
    local = Settings(profile="local", store_uri=store)
    ran = {}

    def run_training_locally(spec, settings, *, job_name, runner, output_uri):
        ran.update(spec=spec, job_name=job_name, output_uri=output_uri)
        return LocalTrainingResult(job_name, f"{output_uri}/{job_name}/output/model.tar.gz", 1)

    monkeypatch.setattr(operators, "run_training_locally", run_training_locally)
    monkeypatch.setattr(operators, "unpack_model_artifact", lambda artifact, staging: ["metrics.json"])
    op = operator(spec=small_training_spec(store, gpus=0), settings=local, instance_type="ml.m5.xlarge")
    result = op.execute(context(try_number=2))
    assert result["training_job_name"] == ran["job_name"] and "-t2-" in ran["job_name"]
    assert result["status"] == "Completed" and result["profile"] == "local"
    assert result["staging_uri"] == f"{store}/staging/fashion-mnist/v1"
    assert ran["output_uri"] == f"{store}/sagemaker/fashion-mnist/v1"
    assert "hook" not in op.__dict__
    with pytest.raises(SageMakerRequestError, match="unknown SageMaker training instance type"):
        operator(settings=local, instance_type="ml.bogus.xlarge").execute(context())


@pytest.mark.parametrize("render", [lambda d: d, json.dumps, str], ids=["native", "json", "repr"])
def test_spec_is_taken_in_every_xcom_shape(render) -> None:
    """The same ``spec=`` as the Kubernetes training operators, checked by the same function."""
    op = operator(spec=render(spec_dict()))
    assert op.resolve_job(context(), op.resolved_settings()).spec.framework == "tensorflow"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (None, "pushed nothing"),
        ({**spec_dict(), "image": "Bad Image"}, "image 'Bad Image'"),
        ({**spec_dict(), "replicas": 0}, "replicas must be an integer >= 1"),
        ({**spec_dict(), "hyperparameters": {"epochs": [1]}}, "hyperparameter 'epochs'"),
    ],
)
def test_a_bad_spec_fails_before_any_aws_client_exists(spec, message: str) -> None:
    from eksml.specs import WorkloadSpecError

    op = operator(spec=spec)
    with pytest.raises(WorkloadSpecError, match=message):
        op.execute(context())
    assert "hook" not in op.__dict__


def test_candidate_is_no_argument() -> None:
    with pytest.raises(TypeError, match="candidate"):
        operator(candidate={"spec": spec_dict()})


def test_wait_is_deferred_to_the_stopping_trigger() -> None:
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
    from airflow.sdk.exceptions import TaskDeferred

    from eksml.sagemaker.triggers import SageMakerTrainingTrigger

    provider = SageMakerTrigger(
        job_name="job-1",
        job_type="Training",
        waiter_delay=15,
        waiter_max_attempts=7,
        aws_conn_id="aws_default",
        region_name="eu-west-1",
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator().defer(trigger=provider, method_name="execute_complete")
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrainingTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "eksml.sagemaker.triggers.SageMakerTrainingTrigger"
    assert kwargs == provider.serialize()[1]
    assert SageMakerTrainingTrigger(**kwargs).job_name == "job-1"


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        ("Failed", "AlgorithmError: ExecuteUserScriptError: exit 2", "ended Failed: AlgorithmError"),
        ("Stopped", None, "ended Stopped: no reason given"),
    ],
)
def test_failed_or_stopped_job_fails_the_task_with_its_reason(status, reason, message) -> None:
    from airflow.sdk.exceptions import AirflowException

    op = operator()
    stub = stubbed(op)
    stub.add_response("describe_training_job", description(status, reason), {"TrainingJobName": "job-1"})
    event = {"status": "failed" if status == "Failed" else "stopped", "job_name": "job-1", "message": reason or ""}
    with pytest.raises(AirflowException, match=message):
        op.execute_complete(context(), event)
    stub.assert_no_pending_responses()


def test_wait_timeout_stops_the_job_and_fails() -> None:
    from airflow.sdk.exceptions import AirflowException

    op = operator()
    stub = stubbed(op)
    stub.add_response("describe_training_job", description("InProgress"), {"TrainingJobName": "job-1"})
    stub.add_response("stop_training_job", {}, {"TrainingJobName": "job-1"})
    with pytest.raises(AirflowException, match="still InProgress when the wait ended; stop requested"):
        op.execute_complete(context(), {"status": "timeout", "job_name": "job-1", "message": "max attempts"})
    stub.assert_no_pending_responses()


def test_on_kill_stops_the_job_of_this_try() -> None:
    op = operator()
    op._job_name = "job-1"
    stub = stubbed(op)
    stub.add_response("stop_training_job", {}, {"TrainingJobName": "job-1"})
    op.on_kill()
    stub.assert_no_pending_responses()


def test_on_kill_of_a_finished_job_only_logs() -> None:
    op = operator()
    op._job_name = "job-1"
    stub = stubbed(op)
    stub.add_client_error("stop_training_job", "ValidationException", "The job has already completed")
    op.on_kill()  # no exception: nothing left to stop
    stub.assert_no_pending_responses()


def test_trigger_on_kill_stops_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from botocore.stub import Stubber

    from eksml.sagemaker import triggers

    hook = SageMakerHook(aws_conn_id=None, region_name="us-west-2")
    stub = Stubber(hook.conn)
    stub.add_response("stop_training_job", {}, {"TrainingJobName": "job-9"})
    stub.activate()
    made = {}

    def make_hook(**kwargs):
        made.update(kwargs)
        return hook

    monkeypatch.setattr(triggers, "SageMakerHook", make_hook)
    trigger = triggers.SageMakerTrainingTrigger(job_name="job-9", aws_conn_id=None, region_name="us-west-2")
    asyncio.run(trigger.on_kill())
    stub.assert_no_pending_responses()
    assert made["region_name"] == "us-west-2"


def test_links_point_at_the_job_and_its_log_streams() -> None:
    from eksml.sagemaker.operators import SageMakerTrainingJobLink, SageMakerTrainingLogsLink

    conf = {"region_name": "eu-west-1", "aws_domain": "aws.amazon.com", "job_name": "job-1"}
    assert SageMakerTrainingJobLink().format_link(**conf) == (
        "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/job-1"
    )
    assert SageMakerTrainingLogsLink().format_link(**conf) == (
        "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logStream:group=/aws/sagemaker/"
        "TrainingJobs;prefix=job-1;streamFilter=typeLogStreamPrefix"
    )
    china = {**conf, "aws_domain": SageMakerTrainingJobLink.get_aws_domain("aws-cn")}
    cn = SageMakerTrainingJobLink().format_link(**china)
    assert cn.startswith("https://console.amazonaws.cn/sagemaker/")


def test_links_are_persisted_per_try() -> None:
    from eksml.sagemaker.operators import SageMakerTrainingJobLink, SageMakerTrainingLogsLink

    op = operator()
    ctx = context()
    op._job_name = "job-1"
    op._persist_links(ctx)
    pushed = ctx["ti"].xcoms
    assert pushed[SageMakerTrainingJobLink.key] == {
        "region_name": "us-west-2",
        "aws_domain": "aws.amazon.com",
        "job_name": "job-1",
    }
    assert pushed[SageMakerTrainingLogsLink.key]["job_name"] == "job-1"


#: FailureReason as SageMaker writes it for an entrypoint that exited 2: script mode (the DLC's
#: toolkit) and a container of our own (the ``failure`` file's text, then the status).
SCRIPT_MODE_EXIT_2 = (
    'AlgorithmError: ExecuteUserScriptError:\nExitCode 2\nErrorMessage "ValueError: labels '
    'outside 0..9"\nCommand "/usr/local/bin/python3.10 train.py --epochs 1", exit code: 2'
)
OWN_IMAGE_EXIT_2 = "AlgorithmError: labels outside 0..9, exit code: 2"


@pytest.mark.parametrize(
    ("reason", "for_good"),
    [
        (SCRIPT_MODE_EXIT_2, True),
        (OWN_IMAGE_EXIT_2, True),
        ('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "CUDA error"', False),
        ("InternalServerError: We encountered an internal error. Please try again.", False),
    ],
)
def test_a_job_failed_by_exit_2_fails_the_task_without_retry(reason, for_good) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    op = operator()
    stub = stubbed(op)
    stub.add_response("describe_training_job", description("Failed", reason), {"TrainingJobName": "job-1"})
    with pytest.raises(AirflowException) as failure:
        op.execute_complete(context(), {"status": "failed", "job_name": "job-1", "message": reason})
    assert isinstance(failure.value, AirflowFailException) is for_good
    assert reason.splitlines()[0] in str(failure.value)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(("reason", "for_good"), [(OWN_IMAGE_EXIT_2, True), ("AlgorithmError: exit code: 1", False)])
def test_the_synchronous_wait_on_a_job_failed_by_exit_2_does_not_retry(monkeypatch, reason, for_good) -> None:
    """``deferrable=False``: the provider's own wait raises on the Failed job (its message quotes
    FailureReason). Its S3 pre-checks are skipped here (Stubber covers the SageMaker client only)."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    from botocore.stub import ANY

    op = operator(deferrable=False, image_source="project", print_log=False, check_interval=1)
    monkeypatch.setattr(op.hook, "check_training_config", lambda config: None)
    stub = stubbed(op)
    stub.add_client_error(
        "describe_training_job",
        "ValidationException",
        "Requested resource not found.",
        expected_params={"TrainingJobName": ANY},
    )
    stub.add_response(
        "create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-west-2:123456789012:training-job/job-1"}, None
    )
    stub.add_response("describe_training_job", description("Failed", reason), {"TrainingJobName": ANY})
    with pytest.raises(AirflowException) as failure:
        op.execute(context())
    assert isinstance(failure.value, AirflowFailException) is for_good
    stub.assert_no_pending_responses()
