"""Amazon EKS clusters through the eksctl CLI: config model, renderer, hook, operator, trigger.

Importing this package is cheap (no AWS clients, no Airflow operators); import
:mod:`eksml.eksctl.operators` for the operator.
"""

from eksml.eksctl.config import ClusterConfig, ClusterConfigError, ManagedNodeGroup
from eksml.eksctl.request import ClusterRequest, build_cluster_configs

__all__ = ["ClusterConfig", "ClusterConfigError", "ClusterRequest", "ManagedNodeGroup", "build_cluster_configs"]
