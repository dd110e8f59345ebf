"""FSx for Lustre for data sets larger than a pod's disk, when ``settings.fsx_lustre`` is on.

A StorageClass of the FSx CSI driver (``fsx.csi.aws.com``) makes a SCRATCH_2 file system whose
``s3ImportPath`` is the model's data prefix in the store: the file system is linked to that
prefix at creation (FSx's data repository link for scratch file systems) and lazily loads the
IDX files from S3 on first read. One claim in the training namespace, ReadWriteMany, which the
training pods and MPI workers mount read-only at ``FSX_MOUNT``
(:func:`eksml.kubernetes.manifests.shared_data`) and read their data set from
(:func:`eksml.kubernetes.manifests.reading_shared_data`). S3 stays the source of truth, and the
read path when the setting is off; nothing is exported back. The driver is the ``aws-fsx-csi-driver`` EKS add-on with
the driver's published IAM policy (vendored in ``include/kubernetes/aws-fsx-csi-driver``).
"""

from __future__ import annotations

import json
from typing import Any

from eksml.cluster.addons import pinned_file
from eksml.cluster.meta import LABELS
from eksml.settings import PROJECT_ROOT, Settings

FSX_DRIVER = PROJECT_ROOT / "include" / "kubernetes" / "aws-fsx-csi-driver" / "kustomization.yaml"
FSX_DRIVER_VERSION = "v1.9.0"
PROVISIONER = "fsx.csi.aws.com"
STORAGE_CLASS = "eksml-fsx-lustre"
#: The FSx for Lustre claim this module makes; training pods mount it read-only (``kubernetes.manifests``).
FSX_CLAIM = "eksml-data-fsx"


def driver_policy() -> dict[str, Any]:
    """The driver controller's IAM policy as its release documents it (checksum verified)."""
    return json.loads(pinned_file(FSX_DRIVER, f"iam-policy-{FSX_DRIVER_VERSION}.json").read_text())


def storage_class(settings: Settings) -> dict[str, Any]:
    subnet = settings.fsx_subnet or settings.private_subnets[0]
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": dict(LABELS)},
        "provisioner": PROVISIONER,
        "parameters": {
            "subnetId": subnet,
            "securityGroupIds": ",".join(settings.fsx_security_groups),
            "deploymentType": "SCRATCH_2",
            "s3ImportPath": settings.data_root,
        },
        # The file system goes with its claim: it is a cache of S3, not the data's home.
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "mountOptions": ["flock"],
    }


def data_claim(settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": FSX_CLAIM, "namespace": settings.namespace, "labels": dict(LABELS)},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": f"{settings.fsx_storage_gib}Gi"}},
        },
    }


def fsx_objects(settings: Settings) -> list[dict[str, Any]]:
    """StorageClass + claim, in apply order (the driver itself is the EKS add-on)."""
    return [storage_class(settings), data_claim(settings)]
