"""The operators DAG files use, from one import line.

Importing this loads the cncf-kubernetes provider (which the operators build on) and nothing
heavier: no TensorFlow, MXNet or AWS clients.
"""

from eksml.kubernetes.mpijob_operator import MPIJobOperator
from eksml.kubernetes.workload_pod import GpuTrainingPodOperator, WorkloadPodOperator

__all__ = ["GpuTrainingPodOperator", "MPIJobOperator", "WorkloadPodOperator"]
