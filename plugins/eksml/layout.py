"""The store's layout and who may touch each part of it: one table for paths and IAM policies.

Every location the pipeline reads or writes lies in one *area* of the store
(``<store>/<area>/<model>/...``). :data:`ACCESS` says which identity may do what in which area;
the IAM policies (``eksml.eksctl.iam``), the README's prerequisites and the preflight checks are
all rendered from it, and the run planner builds its URIs with :func:`area_uri`, so a new area
or a new use of one cannot reach a workload without its permission.

Identities:

* ``training``: the IRSA role of the training namespace's service account; training pods, MPI
  workers and the evaluation pods run under it.
* ``inference``: the IRSA role of the serving namespace's service account.
* ``sagemaker``: the SageMaker execution role; SageMaker itself reads the data channel, syncs
  checkpoints and writes the model archive with it.
* ``pipeline``: the identity Airflow's AWS connection signs with (data preparation, registry,
  SageMaker job submission, cluster checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class Area(str, Enum):
    """A top-level folder of the store."""

    LANDING = "landing"  # upstream drops, one prefix per drop (not per model)
    DATA = "data"  # validated, versioned training data
    STAGING = "staging"  # a run's training output and its evaluation, before registration
    CHECKPOINTS = "checkpoints"  # per-epoch checkpoints a retried try resumes from
    MODELS = "models"  # the registry: versions, champion pointer, promotions
    SAGEMAKER = "sagemaker"  # SageMaker job source tarballs, model archives, endpoint models

    @property
    def per_model(self) -> bool:
        return self is not Area.LANDING


class Identity(str, Enum):
    TRAINING = "training"
    INFERENCE = "inference"
    SAGEMAKER = "sagemaker"
    PIPELINE = "pipeline"


class Op(str, Enum):
    """What an identity does to objects of an area; each maps to the S3 actions it needs."""

    READ = "read"  # list the area, get objects
    WRITE = "write"  # put objects (single or multipart)
    DELETE = "delete"  # delete objects (a stale completion marker, old checkpoints)


#: S3 object actions per operation (listing is granted on the bucket for every area with READ).
OBJECT_ACTIONS: Mapping[Op, tuple[str, ...]] = MappingProxyType(
    {
        Op.READ: ("s3:GetObject",),
        Op.WRITE: ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"),
        Op.DELETE: ("s3:DeleteObject",),
    }
)

_R, _W, _D = Op.READ, Op.WRITE, Op.DELETE

#: Who may do what where. Why each grant exists:
ACCESS: Mapping[Identity, Mapping[Area, frozenset[Op]]] = MappingProxyType(
    {
        Identity.TRAINING: MappingProxyType(
            {
                Area.DATA: frozenset({_R}),  # read the run's data version
                # export the model; a retried try deletes its stale metrics.json first; evaluation
                # writes evaluation.json and plots beside the candidate
                Area.STAGING: frozenset({_R, _W, _D}),
                # look up, restore, write checkpoints; retention deletes old epochs
                Area.CHECKPOINTS: frozenset({_R, _W, _D}),
                Area.MODELS: frozenset({_R}),  # evaluation scores the champion on the same data
            }
        ),
        Identity.INFERENCE: MappingProxyType(
            {
                Area.MODELS: frozenset({_R}),  # the model server loads a registered version
            }
        ),
        Identity.SAGEMAKER: MappingProxyType(
            {
                Area.DATA: frozenset({_R}),  # the training channel is downloaded from the data prefix
                Area.CHECKPOINTS: frozenset({_R, _W, _D}),  # checkpoint sync both ways; retention
                # source tarball in, model.tar.gz out; endpoints load their model archive from here
                Area.SAGEMAKER: frozenset({_R, _W}),
            }
        ),
        Identity.PIPELINE: MappingProxyType(
            {
                Area.LANDING: frozenset({_R, _W}),  # the landing DAG writes drops, training reads them
                Area.DATA: frozenset({_R, _W}),  # data preparation writes the versioned copy
                Area.STAGING: frozenset({_R, _W, _D}),  # SageMaker archives are unpacked here; retention
                Area.CHECKPOINTS: frozenset({_R, _D}),  # retention of finished runs' checkpoints
                # registry copy, metadata, champion pointer, history; a failed registration deletes its
                # partial copy (a folder without metadata.json, never a registered version)
                Area.MODELS: frozenset({_R, _W, _D}),
                Area.SAGEMAKER: frozenset({_R, _W, _D}),  # source tarballs, endpoint archives
            }
        ),
    }
)


def area_root(store_uri: str, area: Area) -> str:
    """``<store>/<area>``: the folder holding every model's part of ``area``."""
    return f"{store_uri.rstrip('/')}/{area.value}"


def area_uri(store_uri: str, area: Area, model_name: str, *parts: str) -> str:
    """``<store>/<area>/<model>/<parts...>``: a location inside one model's part of ``area``."""
    if not area.per_model:
        raise ValueError(f"area {area.value!r} is not per model: use area_root()")
    return "/".join([area_root(store_uri, area), model_name, *(p.strip("/") for p in parts if p.strip("/"))])


def area_key_prefix(area: Area, model_name: str) -> str:
    """Key prefix of ``area`` relative to the store root (``data/fashion-mnist``, ``landing``)."""
    return f"{area.value}/{model_name}" if area.per_model else area.value


def grants(identity: Identity) -> Mapping[Area, frozenset[Op]]:
    return ACCESS[identity]
