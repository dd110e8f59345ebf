"""What a fresh EKS cluster needs before training: Kubernetes access built from the EKS API,
pinned add-ons, namespaces, service accounts, RBAC, autoscaler, and GPU readiness.

Importing this package loads nothing; import the submodules (operators live in
:mod:`eksml.cluster.operators`).
"""
