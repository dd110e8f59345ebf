"""SageMaker's training contract laid out on a local disk, as SageMaker local mode does.

SageMaker gives a training container an ``/opt/ml`` tree (channels under ``input/data``, the
hyperparameters and resource files under ``input/config``, ``model/`` and ``output/`` to
write) and its training toolkit exports ``SM_*`` variables pointing into it. The local profile
builds the same tree under a temporary folder and runs the unchanged entrypoint against it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eksml.sagemaker.request import CHANNEL

HOST = "algo-1"


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
