"""How long the SageMaker branch waits for its job: as long as the job's own stopping condition
allows (within the task's timeout), never a fixed number of polls.

The job is created on a moto server; moto reports every job Completed at once, so the test holds
the job InProgress (moto's own job object, patched) and lets the provider's trigger poll the
server through its real asynchronous client while ``asyncio.sleep`` advances a simulated clock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from fixtures.specs import small_training_spec

from eksml.settings import Settings

STORE = "s3://wait-bucket/eksml"
HOUR = 3600


def _operator(**kw):
    from eksml.sagemaker.operators import SageMakerTrainOperator

    options = dict(
        task_id="train_sagemaker_tensorflow",
        spec=small_training_spec(STORE),
        image_source="project",
        print_log=False,
        settings=Settings(
            profile="aws",
            store_uri=STORE,
            region="us-west-2",
            sagemaker_role_arn="arn:aws:iam::123456789012:role/eksml-sagemaker",
        ),
        max_runtime_s=3 * HOUR,
        execution_timeout=timedelta(hours=7),
        deferrable=True,
    )
    options.update(kw)
    return SageMakerTrainOperator(**options)


def _context(try_number: int) -> dict:
    ti = SimpleNamespace(
        dag_id="fashion_mnist_training", task_id="train_sagemaker_tensorflow", try_number=try_number, xcoms={}
    )
    ti.xcom_push = lambda key, value: ti.xcoms.__setitem__(key, value)
    return {"ti": ti, "run_id": "scheduled__2026-11-29T00:00:00+00:00"}


@pytest.fixture
def job_status(moto_client, moto_bucket, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The status moto reports for every training job, set by the test."""
    from moto.sagemaker.models import FakeTrainingJob

    s3 = moto_client("s3")
    moto_bucket("wait-bucket")
    # the provider checks that the training channel's prefix exists
    s3.put_object(Bucket="wait-bucket", Key="eksml/data/fashion-mnist/i/train-images-idx3-ubyte.gz", Body=b"x")
    state = {"status": "InProgress"}
    answer = FakeTrainingJob.response_object.fget

    def held(job) -> dict:
        return {
            **answer(job),
            "TrainingJobStatus": state["status"],
            "SecondaryStatus": state["status"].replace("InProgress", "Training"),
        }

    monkeypatch.setattr(FakeTrainingJob, "response_object", property(held))
    return state


def _wait_in_simulated_time(trigger, job_status: dict, completes_after_s: float) -> tuple[dict, float]:
    clock = {"now": 0.0}
    real_sleep = asyncio.sleep

    async def simulated_sleep(delay: float, *args, **kwargs):
        clock["now"] += delay
        if clock["now"] >= completes_after_s:
            job_status["status"] = "Completed"
        await real_sleep(0)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    asyncio.sleep = simulated_sleep
    try:
        return asyncio.run(first_event()), clock["now"]
    finally:
        asyncio.sleep = real_sleep


def test_a_job_in_progress_after_two_hours_is_still_waited_on(job_status: dict) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    op = _operator(check_interval=60)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(_context(try_number=1))
    # the job was really created, and is InProgress
    assert op.hook.describe_training_job(op._job_name)["TrainingJobStatus"] == "InProgress"
    assert deferred.value.timeout >= timedelta(hours=3)
    event, waited = _wait_in_simulated_time(deferred.value.trigger, job_status, completes_after_s=2.5 * HOUR)
    assert event["status"] == "success", event
    assert waited >= 2.5 * HOUR


def test_a_job_past_its_own_limit_is_given_up(job_status: dict) -> None:
    """The bound is the job's: a job that never ends is given up after MaxRuntime plus the overhead
    (on demand; a spot job's bound adds its MaxWaitTime, see the next test)."""
    from airflow.sdk.exceptions import TaskDeferred

    from eksml.sagemaker.operators import JOB_OVERHEAD_S

    op = _operator(check_interval=300, max_runtime_s=HOUR, use_spot=False)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(_context(try_number=2))
    event, waited = _wait_in_simulated_time(deferred.value.trigger, job_status, completes_after_s=100 * HOUR)
    assert event["status"] == "timeout"
    assert HOUR + JOB_OVERHEAD_S <= waited <= HOUR + JOB_OVERHEAD_S + 300


def test_wait_bound_follows_spot_wait_and_task_timeout() -> None:
    from eksml.sagemaker.operators import JOB_OVERHEAD_S, job_wait_s

    assert job_wait_s({"MaxRuntimeInSeconds": 3 * HOUR}, None) == 3 * HOUR + JOB_OVERHEAD_S
    spot = {"MaxRuntimeInSeconds": 3 * HOUR, "MaxWaitTimeInSeconds": 6 * HOUR}
    assert job_wait_s(spot, timedelta(hours=9)) == 6 * HOUR + JOB_OVERHEAD_S
    assert job_wait_s(spot, timedelta(hours=5)) == 5 * HOUR
