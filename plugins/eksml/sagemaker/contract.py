"""SageMaker's training contract, both sides of it, and the local profile's run under it.

**What a job's container sees.** SageMaker gives a training container an ``/opt/ml`` tree
(channels under ``input/data``, the hyperparameters and resource files under ``input/config``,
``model/`` and ``output/`` to write) and its training toolkit exports ``SM_*`` variables
pointing into it. :class:`OptMl` and :func:`toolkit_environment` build the same tree and
variables under a temporary folder, as SageMaker local mode does.

**What a job leaves.** SageMaker tars ``/opt/ml/model`` into ``<output>/<job>/output/model.tar.gz``.
Unpacking it into the spec's ``model_uri`` leaves there exactly the files the Kubernetes branch
writes, so evaluation and registration cannot tell the branches apart.

**The local profile.** :func:`run_training_locally` is SageMaker local mode with the image's
virtualenv standing in for the container: the data is copied into the ``training`` channel, the
hyperparameters written where SageMaker writes them, the toolkit's variables set, and the
entrypoint run with *no* command-line arguments, so it finds everything through the contract
alone. The ``model/`` folder is then packed into ``model.tar.gz`` at the place SageMaker would
upload it, and goes through the same unpacking as a real job's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from eksml.errors import ServiceError
from eksml.layout import METRICS
from eksml.local.runner import LocalRunner
from eksml.sagemaker.request import (
    CHANNEL,
    CHECKPOINT_LOCAL_PATH,
    default_output_uri,
    model_artifact_uri,
    spec_hyperparameters,
    spec_locations,
)
from eksml.settings import Settings
from eksml.specs import WorkloadSpec
from eksml.storage import copy_tree, is_local, store_path, workload_env

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

HOST = "algo-1"


# --- what the container sees -------------------------------------------------------------------
@dataclass(frozen=True)
class OptMl:
    """The ``/opt/ml`` folders under ``root``."""

    root: Path

    @property
    def input_config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def channel(self) -> Path:
        return self.root / "input" / "data" / CHANNEL

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    def create(self, hyperparameters: Mapping[str, str]) -> OptMl:
        """Make the folders and write ``hyperparameters.json``, ``resourceconfig.json``, ``inputdataconfig.json``."""
        for folder in (self.input_config, self.channel, self.model, self.output_data):
            folder.mkdir(parents=True, exist_ok=True)
        (self.input_config / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters), indent=2))
        (self.input_config / "resourceconfig.json").write_text(
            json.dumps({"current_host": HOST, "hosts": [HOST], "network_interface_name": "eth0"})
        )
        (self.input_config / "inputdataconfig.json").write_text(
            json.dumps(
                {
                    CHANNEL: {
                        "TrainingInputMode": "File",
                        "S3DistributionType": "FullyReplicated",
                        "RecordWrapperType": "None",
                    }
                }
            )
        )
        return self


def _decoded(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return value


def toolkit_environment(
    opt_ml: OptMl, hyperparameters: Mapping[str, str], *, checkpoint_dir: str, entry_point: str, num_gpus: int = 0
) -> dict[str, str]:
    """The ``SM_*`` variables SageMaker's training toolkit exports for one host.

    ``SM_CHECKPOINT_DIR`` is not a toolkit variable: trainkit reads it in place of the fixed
    ``/opt/ml/checkpoints`` so that a local run checkpoints to the run's checkpoint location.
    """
    user = {k: _decoded(v) for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    env = {
        "SM_MODEL_DIR": str(opt_ml.model),
        "SM_CHANNELS": json.dumps([CHANNEL]),
        f"SM_CHANNEL_{CHANNEL.upper()}": str(opt_ml.channel),
        "SM_INPUT_DIR": str(opt_ml.root / "input"),
        "SM_INPUT_CONFIG_DIR": str(opt_ml.input_config),
        "SM_OUTPUT_DIR": str(opt_ml.output),
        "SM_OUTPUT_DATA_DIR": str(opt_ml.output_data),
        "SM_CHECKPOINT_DIR": checkpoint_dir,
        "SM_HPS": json.dumps(user),
        "SM_HOSTS": json.dumps([HOST]),
        "SM_CURRENT_HOST": HOST,
        "SM_NUM_GPUS": str(num_gpus),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_USER_ENTRY_POINT": entry_point,
        "SM_MODULE_NAME": Path(entry_point).stem,
        "SM_LOG_LEVEL": "20",
    }
    for key, value in user.items():
        env["SM_HP_" + key.upper().replace("-", "_")] = value if isinstance(value, str) else json.dumps(value)
    return env


# --- what the job leaves: model.tar.gz -----------------------------------------------------------
class ArtifactError(ServiceError):
    """The model artifact is missing, unsafe to unpack, or not a finished training output."""


def pack_model_dir(model_dir: str | Path, archive: str | Path) -> Path:
    """Tar and gzip every file under ``model_dir`` with paths relative to it (as SageMaker does)."""
    root, archive = Path(model_dir), Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return archive


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise ArtifactError(f"model archive member {member.name!r} points outside the model folder")
        if not (member.isfile() or member.isdir()):
            raise ArtifactError(f"model archive member {member.name!r} is not a plain file or folder")
        if str(name) in ("", "."):
            continue
        members.append(member)
    return members


def extract_model_archive(archive: str | Path, dest: str | Path) -> Path:
    """Unpack ``archive`` into ``dest`` after checking every member; return ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, members=_safe_members(tar), filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtifactError(f"cannot unpack model archive {archive}: {exc}") from exc
    if not (dest / METRICS).is_file():
        raise ArtifactError(f"model archive {archive} holds no {METRICS}: training did not finish")
    return dest


def unpack_model_artifact(artifact: ObjectStoragePath, staging: ObjectStoragePath) -> list[str]:
    """Fetch ``model.tar.gz`` from ``artifact``, unpack it into ``staging``; return the files written.

    ``metrics.json`` is copied last, so a reader never sees it beside a half-copied model.
    """
    from airflow.sdk import ObjectStoragePath

    if not artifact.exists():
        raise ArtifactError(f"model artifact {artifact} does not exist")
    with tempfile.TemporaryDirectory(prefix="sm-artifact-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        with artifact.open("rb") as src, open(archive, "wb") as dst:
            shutil.copyfileobj(src, dst, length=8 << 20)
        unpacked = extract_model_archive(archive, Path(tmp) / "model")
        if is_local(staging):
            staging.mkdir(parents=True, exist_ok=True)
        return copy_tree(ObjectStoragePath(unpacked.as_uri()), staging, last=(METRICS,))


# --- the local profile ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalTrainingResult:
    job_name: str
    model_artifact: str
    output_lines: int


def _checkpoint_dir(checkpoint_uri: str | None, root: Path) -> str:
    """SageMaker mirrors /opt/ml/checkpoints to the run's checkpoint S3 URI; locally the entrypoint
    checkpoints to that location directly, so a retried task resumes from it."""
    if not checkpoint_uri:
        return str(root / "checkpoints")
    return checkpoint_uri[len("file://") :] if checkpoint_uri.startswith("file://") else checkpoint_uri


def run_training_locally(
    spec: WorkloadSpec,
    settings: Settings,
    *,
    job_name: str,
    runner: LocalRunner | None = None,
    output_uri: str | None = None,
    timeout: float | None = None,
) -> LocalTrainingResult:
    """Train ``spec`` under the SageMaker contract; return where its ``model.tar.gz`` was put."""
    runner = runner or LocalRunner(settings, log)
    locations = spec_locations(spec)
    # No command line: the entrypoint must find its inputs through the contract alone.
    contract_spec = dataclasses.replace(spec, locations={}, hyperparameters={}, args=())
    runner.check_ready(contract_spec)
    hyperparameters = {
        **spec_hyperparameters(spec),
        "sagemaker_program": json.dumps(spec.script),
        "sagemaker_job_name": json.dumps(job_name),
        "sagemaker_region": json.dumps(settings.region),
    }
    artifact_uri = model_artifact_uri(output_uri or default_output_uri(spec, settings), job_name)
    with tempfile.TemporaryDirectory(prefix=f"{job_name[:40]}-opt-ml-") as tmp:
        opt_ml = OptMl(Path(tmp)).create(hyperparameters)
        copied = copy_tree(store_path(locations.data_uri, settings), store_path(str(opt_ml.channel), settings))
        log.info("channel %s: %d file(s) from %s", opt_ml.channel, len(copied), locations.data_uri)
        env = {
            **workload_env(settings),
            **toolkit_environment(
                opt_ml,
                hyperparameters,
                checkpoint_dir=_checkpoint_dir(locations.checkpoint_uri, opt_ml.root),
                entry_point=spec.script,
            ),
        }
        log.info(
            "local SageMaker contract under %s (checkpoints: %s in SageMaker, %s here)",
            opt_ml.root,
            CHECKPOINT_LOCAL_PATH,
            env["SM_CHECKPOINT_DIR"],
        )
        lines = runner.run(contract_spec, extra_env=env, timeout=timeout, attempt_of=spec)
        archive = pack_model_dir(opt_ml.model, opt_ml.output / "model.tar.gz")
        target = store_path(artifact_uri, settings)
        if is_local(target):
            target.parent.mkdir(parents=True, exist_ok=True)
        store_path(str(archive), settings).copy(target)
    log.info("model artifact written to %s", artifact_uri)
    return LocalTrainingResult(job_name=job_name, model_artifact=artifact_uri, output_lines=len(lines))
