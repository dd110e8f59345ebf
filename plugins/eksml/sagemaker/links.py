"""Task links to the training job in the SageMaker console and to its CloudWatch log streams.

The amazon provider ships a SageMaker link for transform jobs only, so these two follow its
:class:`BaseAwsLink` (XCom-persisted, partition-aware console domain) for training jobs.
SageMaker writes a job's logs to ``/aws/sagemaker/TrainingJobs`` in streams named
``<job>/algo-<n>-<epoch>``, so the log link filters the group by the job-name prefix.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

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
