"""trainkit.cli: the arguments of every training entrypoint, under both contracts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trainkit.cli import check_uris, parse_args, sagemaker_defaults

BASE = ["--data-uri", "/data", "--model-uri", "/model"]


@pytest.fixture(autouse=True)
def no_sagemaker(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "SM_MODEL_DIR",
        "SM_CHANNEL_TRAINING",
        "SM_CHANNEL_TRAIN",
        "SM_CHECKPOINT_DIR",
        "SM_OUTPUT_DATA_DIR",
        "SM_INPUT_CONFIG_DIR",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """SageMaker's training contract; returns a function that writes hyperparameters.json."""
    monkeypatch.setenv("SM_MODEL_DIR", "/opt/ml/model")
    monkeypatch.setenv("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training")
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")
    monkeypatch.setenv("SM_INPUT_CONFIG_DIR", str(tmp_path))

    def write(hyperparameters: dict) -> None:
        (tmp_path / "hyperparameters.json").write_text(json.dumps(hyperparameters))

    return write


def test_defaults_of_the_command_line_contract() -> None:
    args = parse_args(BASE)
    assert (args.data_uri, args.model_uri, args.checkpoint_uri) == ("/data", "/model", None)
    assert (args.epochs, args.batch_size, args.learning_rate, args.seed) == (5, 128, 1e-3, 42)
    assert args.limit_train is None and args.limit_test is None


def test_missing_uris_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--epochs", "2"])
    assert exc.value.code == 2
    assert "missing --data-uri, --model-uri" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--epochs", "0", "must be >= 1, got 0"),
        ("--epochs", "1.5", "must be an integer >= 1, got '1.5'"),
        ("--batch-size", "abc", "must be an integer >= 1, got 'abc'"),
        ("--limit-train", "-3", "must be >= 1, got -3"),
        ("--learning-rate", "-0.01", "must be a finite number > 0, got -0.01"),
        ("--learning-rate", "0", "must be a finite number > 0, got 0"),
        ("--learning-rate", "nan", "must be a finite number > 0, got nan"),
        ("--learning-rate", "inf", "must be a finite number > 0, got inf"),
        ("--learning-rate", "fast", "must be a number > 0, got 'fast'"),
    ],
)
def test_bad_values_fail_with_the_option_and_reason(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args([*BASE, option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and message in err


def test_image_specific_arguments() -> None:
    args = parse_args([*BASE, "--no-onnx"], lambda p: p.add_argument("--no-onnx", dest="onnx", action="store_false"))
    assert args.onnx is False


def test_sagemaker_contract_fills_uris_and_hyperparameters(sagemaker) -> None:
    sagemaker(
        {
            "epochs": "3",
            "learning_rate": "0.01",
            "batch_size": "64",
            "sagemaker_program": "train.py",
            "sagemaker_region": "us-west-2",
        }
    )
    args = parse_args([])
    assert args.model_uri == "/opt/ml/model"
    assert args.data_uri == "/opt/ml/input/data/training"
    assert args.checkpoint_uri == "/opt/ml/checkpoints"
    assert args.output_dir == "/opt/ml/output/data"
    assert (args.epochs, args.learning_rate, args.batch_size) == (3, 0.01, 64)


def test_json_encoded_hyperparameters_are_decoded(sagemaker) -> None:
    # The SageMaker SDK's framework estimators JSON-encode each value; plain requests do not.
    sagemaker({"data_uri": '"s3://bucket/data"', "epochs": 2, "limit_test": "500"})
    args = parse_args([])
    assert (args.data_uri, args.epochs, args.limit_test) == ("s3://bucket/data", 2, 500)


def test_explicit_arguments_win_over_hyperparameters(sagemaker) -> None:
    sagemaker({"epochs": "3", "batch_size": "64"})
    assert parse_args(["--epochs", "7"]).epochs == 7


def test_process_arguments_are_read_with_hyperparameters(sagemaker, monkeypatch: pytest.MonkeyPatch) -> None:
    # `train --epochs 4` in a SageMaker container: sys.argv must not be dropped for hyperparameters.
    sagemaker({"epochs": "3", "batch_size": "64"})
    monkeypatch.setattr(sys, "argv", ["train", "--epochs", "4"])
    args = parse_args()
    assert (args.epochs, args.batch_size) == (4, 64)


def test_bad_hyperparameter_fails_like_a_bad_argument(sagemaker, capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker({"epochs": "0"})
    with pytest.raises(SystemExit):
        parse_args([])
    assert "argument --epochs: must be >= 1, got 0" in capsys.readouterr().err


def test_no_sagemaker_contract_outside_sagemaker() -> None:
    assert sagemaker_defaults({"HOME": "/root"}) == ({}, {})


def test_hyperparameters_are_taken_by_name_not_as_a_command_line(sagemaker) -> None:
    """A value that looks like an option is still the value of its hyperparameter."""
    sagemaker({"output_dir": "--weird-but-valid", "batch-size": "32"})
    args = parse_args([])
    assert (args.output_dir, args.batch_size) == ("--weird-but-valid", 32)


def test_unknown_hyperparameter_is_named(sagemaker, capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker({"epochs": "2", "colour": "blue"})
    with pytest.raises(SystemExit):
        parse_args([])
    assert "unknown hyperparameter(s): colour" in capsys.readouterr().err


def test_a_flag_is_a_true_or_false_hyperparameter(sagemaker, capsys: pytest.CaptureFixture[str]) -> None:
    def no_onnx(parser):
        parser.add_argument("--no-onnx", dest="onnx", action="store_false")

    sagemaker({"onnx": "false"})
    assert parse_args([], no_onnx).onnx is False
    sagemaker({"onnx": "maybe"})
    with pytest.raises(SystemExit):
        parse_args([], no_onnx)
    assert "hyperparameter onnx: expected true or false, got 'maybe'" in capsys.readouterr().err


def test_check_uris_names_the_argument_with_an_unknown_scheme() -> None:
    args = parse_args(["--data-uri", "/data", "--model-uri", "nosuch://bucket/model"])
    with pytest.raises(ValueError, match=r"--model-uri 'nosuch://bucket/model'"):
        check_uris(args)
    check_uris(parse_args([*BASE, "--checkpoint-uri", "file:///tmp/ckpt"]))  # known schemes pass


def test_exit_now_ends_with_the_status_and_loses_no_buffered_output(tmp_path: Path) -> None:
    """The entrypoints end with exit_now: what they printed or logged last (the result line the
    operators read) must reach the pipe and the log file though the interpreter's teardown is skipped."""
    import subprocess

    common = Path(__file__).resolve().parents[2] / "images" / "common"
    log_file = tmp_path / "entrypoint.log"
    code = (
        "import logging, sys\n"
        f"logging.basicConfig(filename={str(log_file)!r}, level=logging.INFO)\n"
        "logging.getLogger('x').info('logged last')\n"
        "print('EKSML_RESULT {}')\n"  # block-buffered: stdout is a pipe
        "from trainkit.cli import exit_now\n"
        "exit_now(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(common)}, timeout=60
    )
    assert done.returncode == 3
    assert done.stdout == "EKSML_RESULT {}\n"
    assert "logged last" in log_file.read_text()


def test_tensorflow_image_defaults_epochs_and_batch_to_its_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG passes no --epochs / --batch-size unless a run sets them: the image's recipe decides."""
    import importlib.util

    image = Path(__file__).resolve().parents[2] / "images" / "tf-fashion-mnist"
    monkeypatch.syspath_prepend(str(image))
    spec = importlib.util.spec_from_file_location("tf_image_train", image / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from network import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS

    args = module.parse(BASE)
    assert (args.epochs, args.batch_size) == (DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE)
    assert (module.parse([*BASE, "--epochs", "2"]).epochs, parse_args(BASE).epochs) == (2, 5)
