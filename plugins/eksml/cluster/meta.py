"""What every Kubernetes object the project applies carries: its labels, and the annotation that
gives a service account its IAM role (IRSA).

The project's own objects (:mod:`eksml.cluster.objects`) and the add-ons' (FSx, load balancer,
Karpenter) use them; a module of its own, so the add-ons need not import the objects that
assemble them.
"""

from __future__ import annotations

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
LABELS = {"app.kubernetes.io/part-of": "eksml", "app.kubernetes.io/managed-by": "eksml"}
