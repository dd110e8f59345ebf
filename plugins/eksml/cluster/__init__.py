"""What a fresh EKS cluster needs before training: Kubernetes access built from the EKS API,
pinned add-ons, namespaces, service accounts, RBAC, autoscaler, and GPU readiness.

Importing this package is cheap; operators live in :mod:`eksml.cluster.operators`.
"""

from eksml.cluster.objects import render_kubernetes_objects

__all__ = ["render_kubernetes_objects"]
