"""SageMaker training branch and endpoint target: request builders and operators.

Importing this package loads no AWS client; the operators live in ``eksml.sagemaker.operators``
(and ``eksml.sagemaker.endpoint``), which import the amazon provider.
"""

from eksml.sagemaker.request import SageMakerRequestError, build_training_request, sagemaker_job_name

__all__ = ["SageMakerRequestError", "build_training_request", "sagemaker_job_name"]
