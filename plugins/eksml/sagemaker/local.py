"""The SageMaker branch in the local profile: the real entrypoint, trained under SageMaker's contract.

Like SageMaker local mode, but with the image's virtualenv standing in for the container: the
data is copied into the ``training`` channel, the hyperparameters written where SageMaker
writes them, the toolkit's variables set, and the spec run with *no* command-line arguments,
so the entrypoint finds everything through the SageMaker contract alone. The ``model/`` folder
is then packed into ``model.tar.gz`` at the place SageMaker would upload it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from eksml.local.runner import LocalRunner
from eksml.sagemaker.artifacts import pack_model_dir
from eksml.sagemaker.contract import OptMl, toolkit_environment
from eksml.sagemaker.request import (
    CHECKPOINT_LOCAL_PATH,
    default_output_uri,
    model_artifact_uri,
    spec_hyperparameters,
    spec_locations,
)
from eksml.settings import Settings
from eksml.specs import WorkloadSpec
from eksml.storage import copy_tree, is_local, store_path, workload_env

log = logging.getLogger(__name__)


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
    contract_spec = dataclasses.replace(spec, args=())
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
        lines = runner.run(contract_spec, extra_env=env, timeout=timeout)
        archive = pack_model_dir(opt_ml.model, opt_ml.output / "model.tar.gz")
        target = store_path(artifact_uri, settings)
        if is_local(target):
            target.parent.mkdir(parents=True, exist_ok=True)
        store_path(str(archive), settings).copy(target)
    log.info("model artifact written to %s", artifact_uri)
    return LocalTrainingResult(job_name=job_name, model_artifact=artifact_uri, output_lines=len(lines))
