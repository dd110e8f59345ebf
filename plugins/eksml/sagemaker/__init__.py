"""SageMaker training branch: the request resolved from the spec, and the operator that runs it.

Importing this package loads no AWS client; the operator lives in ``eksml.sagemaker.operators``,
which imports the amazon provider.
"""

from eksml.sagemaker.request import (
    SageMakerRequestError,
    TrainingJob,
    build_training_request,
    resolve_training_job,
    sagemaker_job_name,
)

__all__ = [
    "SageMakerRequestError",
    "TrainingJob",
    "build_training_request",
    "resolve_training_job",
    "sagemaker_job_name",
]
