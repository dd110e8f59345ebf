"""The provider's SageMaker trigger, plus stopping the job when a user kills the deferred task.

While the task is deferred no worker runs it, so ``BaseOperator.on_kill`` cannot stop the job;
Airflow calls ``BaseTrigger.on_kill`` instead (only on a user's mark-failed/clear, never on a
triggerer restart). The provider's trigger does not implement it, hence this subclass.
"""

from __future__ import annotations

import asyncio
import logging

from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

log = logging.getLogger(__name__)


def stop_training_job(hook: SageMakerHook, job_name: str) -> bool:
    """Ask SageMaker to stop ``job_name``; False (logged) when it is already over or unknown."""
    from botocore.exceptions import ClientError

    try:
        hook.conn.stop_training_job(TrainingJobName=job_name)
    except ClientError as exc:
        log.warning("could not stop SageMaker training job %s: %s", job_name, exc)
        return False
    log.info("stop requested for SageMaker training job %s", job_name)
    return True


class SageMakerTrainingTrigger(SageMakerTrigger):
    """Waits for a training job like ``SageMakerTrigger``; stops it when the task is killed."""

    def __init__(self, *, job_name: str, job_type: str = "Training", **kwargs) -> None:
        super().__init__(job_name=job_name, job_type=job_type, **kwargs)

    @classmethod
    def from_trigger(cls, trigger: SageMakerTrigger) -> SageMakerTrainingTrigger:
        """The same wait (job, delay, attempts, connection) as ``trigger``."""
        _, kwargs = trigger.serialize()
        return cls(**kwargs)

    async def on_kill(self) -> None:
        hook = SageMakerHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify, config=self.botocore_config
        )
        await asyncio.to_thread(stop_training_job, hook, self.job_name)
