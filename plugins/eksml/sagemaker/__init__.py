"""SageMaker training branch: request builders and the operator.

Importing this package loads no AWS client; the operator lives in ``eksml.sagemaker.operators``,
which imports the amazon provider.
"""

from eksml.sagemaker.request import SageMakerRequestError, build_training_request, sagemaker_job_name

__all__ = ["SageMakerRequestError", "build_training_request", "sagemaker_job_name"]
