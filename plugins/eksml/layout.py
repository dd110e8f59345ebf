"""The store's layout and who may touch each part of it: one table for paths and IAM policies.

Every location the pipeline reads or writes lies in one *area* of the store
(``<store>/<area>/<model>/...``). :data:`ACCESS` says which identity may do what in which area;
the IAM policies (``eksml.cluster.iam``), the prerequisites in ``docs/aws.md`` and the preflight checks are
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
* ``lifecycle``: the identity eksctl runs as to create, scale and delete clusters
  (``eksml.cluster.lifecycle_iam``); it never touches the store.

It also names what lies inside those areas, for every reader and writer of the package: the
files of a model version (:class:`ModelVersion`), the timestamp in store paths and the form of
a data location. The version files' names themselves are the images' contract
(``images/common/trainkit/contract.py``, loaded through :mod:`eksml.contract`): the images write
them, the package reads them here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from eksml.contract import EVALUATION, METADATA, METRICS, PLOTS
from eksml.contract import PER_CLASS_ACCURACY as PER_CLASS_ACCURACY  # re-exported: the version page's names
from eksml.contract import TRAINING_CURVES as TRAINING_CURVES

if TYPE_CHECKING:
    from os import PathLike

    from airflow.sdk import ObjectStoragePath


class Area(str, Enum):
    """A top-level folder of the store."""

    LANDING = "landing"  # upstream drops, one prefix per drop (not per model)
    DATA = "data"  # validated, versioned training data
    STAGING = "staging"  # a run's training output and its evaluation, before registration
    CHECKPOINTS = "checkpoints"  # per-epoch checkpoints a retried try resumes from
    MODELS = "models"  # the registry: versions, champion pointer, promotions
    SAGEMAKER = "sagemaker"  # SageMaker job source tarballs and model archives

    @property
    def per_model(self) -> bool:
        return self is not Area.LANDING


class Identity(str, Enum):
    TRAINING = "training"
    INFERENCE = "inference"
    SAGEMAKER = "sagemaker"
    PIPELINE = "pipeline"
    LIFECYCLE = "lifecycle"


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
                # source tarball in, model.tar.gz out
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
                Area.SAGEMAKER: frozenset({_R, _W, _D}),  # source tarballs, model archives
            }
        ),
        Identity.LIFECYCLE: MappingProxyType({}),  # CloudFormation, EC2, EKS, IAM roles: no store
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


#: Timestamps in store paths: data intervals, model versions, landing drops, promotion entries.
STAMP = "%Y%m%dT%H%M%S"

# --- where data may come from ----------------------------------------------------------------
#: An S3 bucket name (lowercase letters, digits, dots and hyphens, 3-63 characters).
S3_BUCKET = r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"
BUCKET_NAME = re.compile(rf"^{S3_BUCKET}$")
#: Where a drop of IDX files may live: an absolute path, a ``file:///`` URI or an S3 prefix.
DATA_URI = re.compile(rf"^(s3://{S3_BUCKET}(/.*)?|file:///.*|/.*)$")
MAX_URI_LENGTH = 1024


def data_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot name a drop, or None: the form above, and no ``.``/``..`` segment
    (``s3://bucket/../../x`` would leave the prefix it claims)."""
    if not uri or len(uri) > MAX_URI_LENGTH or not DATA_URI.match(uri):
        return (
            f"must be an absolute path, file:/// or s3://bucket/ URI (at most {MAX_URI_LENGTH} "
            f"characters), got {uri[:200]!r}"
        )
    path = uri.split("://", 1)[-1]
    if any(segment in (".", "..") for segment in path.split("/")):
        return f"must not contain '.' or '..' path segments, got {uri[:200]!r}"
    return None


# --- a model version's folder ----------------------------------------------------------------
# The file names are the images' contract (they write them): ``eksml.contract``. Training
# writes METRICS last, so its presence marks a finished training output; METADATA is written
# last at registration, so its presence marks a registered version; the evaluation step writes
# EVALUATION and the PLOTS beside the candidate.
#: What a person reads of a version, with its media type (never the model itself).
READABLE: Mapping[str, str] = MappingProxyType(
    {METADATA: "application/json", METRICS: "application/json", EVALUATION: "application/json"}
    | {plot: "image/png" for plot in PLOTS}
)


def candidate_accuracy(evaluation: Mapping[str, Any] | None, metrics: Mapping[str, Any]) -> float | None:
    """A candidate's accuracy as the evaluation step measured it, training's own as the fallback."""
    value = ((evaluation or {}).get("candidate") or {}).get("test_accuracy", metrics.get("test_accuracy"))
    return None if value is None else float(value)


def recorded_accuracy(metadata: Mapping[str, Any]) -> float | None:
    """The test accuracy a registered version's metadata records (training's own figure)."""
    value = (metadata.get("metrics") or {}).get("test_accuracy")
    return None if value is None else float(value)


class ModelVersion:
    """The folder of one model version, a run's staging output or a registered version.

    Every reader of a version's files goes through here: the registry, the run's outcome and
    report, the version page, both deployment paths and the SageMaker artifact unpacking.
    ``folder`` is an ``ObjectStoragePath`` (any store) or a local ``pathlib.Path``;
    :func:`eksml.storage.version_at` opens one from a URI in the configured store.
    """

    def __init__(self, folder: ObjectStoragePath | PathLike) -> None:
        self.folder = folder

    def file(self, name: str) -> Any:
        return self.folder / name

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self.file(name)
        return json.loads(path.read_text()) if path.exists() else None

    @property
    def finished(self) -> bool:
        """Training wrote its last file."""
        return self.file(METRICS).exists()

    @property
    def evaluated(self) -> bool:
        return self.file(EVALUATION).exists()

    @property
    def registered(self) -> bool:
        return self.file(METADATA).exists()

    def metrics(self) -> dict[str, Any]:
        """Training's figures; FileNotFoundError naming the folder when training did not finish."""
        found = self._read(METRICS)
        if found is None:
            raise FileNotFoundError(f"no {METRICS} at {self.folder}: not a finished model version")
        return found

    def evaluation(self) -> dict[str, Any] | None:
        return self._read(EVALUATION)

    def metadata(self) -> dict[str, Any] | None:
        return self._read(METADATA)

    def accuracy(self) -> float | None:
        """The candidate's accuracy: :func:`candidate_accuracy` of this folder's files."""
        return candidate_accuracy(self.evaluation(), self.metrics())

    def expectations(self) -> dict[str, Any]:
        """What a served version must answer: its class names and evaluated accuracy (smoke test).

        Reads ``metrics.json`` and ``evaluation.json`` once each."""
        metrics = self.metrics()
        return {
            "class_names": metrics.get("class_names"),
            "expected_accuracy": candidate_accuracy(self.evaluation(), metrics),
        }
