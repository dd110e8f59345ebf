"""The on-disk SageMaker contract the local profile builds, read back by the entrypoints' own parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eksml.sagemaker.contract import OptMl, toolkit_environment
from eksml.sagemaker.request import spec_hyperparameters
from eksml.specs import training_spec


@pytest.fixture
def contract(tmp_path: Path):
    spec = training_spec(
        framework="tensorflow",
        data_uri="file:///data",
        model_uri="file:///staging/v1",
        checkpoint_uri="file:///ckpt/v1",
        epochs=1,
        batch_size=64,
        learning_rate=0.005,
        limit_train=2000,
        limit_test=500,
    )
    hps = {**spec_hyperparameters(spec), "sagemaker_program": '"train.py"'}
    opt_ml = OptMl(tmp_path / "opt" / "ml").create(hps)
    env = toolkit_environment(opt_ml, hps, checkpoint_dir="/ckpt/v1", entry_point="train.py", num_gpus=0)
    return opt_ml, hps, env


def test_tree_and_config_files(contract) -> None:
    opt_ml, hps, _ = contract
    for folder in ("input/config", "input/data/training", "model", "output/data"):
        assert (opt_ml.root / folder).is_dir(), folder
    assert json.loads((opt_ml.input_config / "hyperparameters.json").read_text()) == hps
    assert json.loads((opt_ml.input_config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert "training" in json.loads((opt_ml.input_config / "inputdataconfig.json").read_text())


def test_toolkit_variables(contract) -> None:
    opt_ml, _, env = contract
    assert env["SM_MODEL_DIR"] == str(opt_ml.root / "model")
    assert env["SM_CHANNEL_TRAINING"] == str(opt_ml.root / "input" / "data" / "training")
    assert env["SM_OUTPUT_DATA_DIR"] == str(opt_ml.root / "output" / "data")
    assert env["SM_INPUT_CONFIG_DIR"] == str(opt_ml.root / "input" / "config")
    assert env["SM_CHECKPOINT_DIR"] == "/ckpt/v1"
    assert json.loads(env["SM_CHANNELS"]) == ["training"]
    assert json.loads(env["SM_HPS"]) == {
        "epochs": 1,
        "batch-size": 64,
        "learning-rate": 0.005,
        "limit-train": 2000,
        "limit-test": 500,
    }
    assert env["SM_HP_BATCH_SIZE"] == "64"
    assert env["SM_NUM_GPUS"] == "0" and env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_USER_ENTRY_POINT"] == "train.py" and env["SM_MODULE_NAME"] == "train"


def test_entrypoint_parser_reads_the_contract_alone(contract, monkeypatch: pytest.MonkeyPatch) -> None:
    """trainkit.cli (shared by every entrypoint) finds data, model, checkpoints and hyperparameters."""
    from trainkit.cli import parse_args

    opt_ml, _, env = contract
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = parse_args([])
    assert args.data_uri == str(opt_ml.channel)
    assert args.model_uri == str(opt_ml.model)
    assert args.checkpoint_uri == "/ckpt/v1"
    assert args.output_dir == str(opt_ml.output_data)
    assert (args.epochs, args.batch_size, args.learning_rate) == (1, 64, 0.005)
    assert (args.limit_train, args.limit_test) == (2000, 500)
