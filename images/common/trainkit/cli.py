"""Arguments of every training entrypoint, under two contracts from one program.

* Elsewhere (pod, MPIJob, local process): plain command-line arguments.
* On SageMaker (``SM_MODEL_DIR`` is set): data from ``SM_CHANNEL_TRAINING``, the model to
  ``SM_MODEL_DIR``, checkpoints to ``/opt/ml/checkpoints`` and hyperparameters from
  ``<SM_INPUT_CONFIG_DIR>/hyperparameters.json``, taken by name as the arguments' defaults.
  Explicit command-line arguments still win: SageMaker's training toolkit also passes every
  hyperparameter as ``--name value``, and a project image started without it passes none.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .contract import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, METRICS, parse_bool


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _hyperparameter_text(value: object) -> str:
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, (str, int, float)) and not isinstance(decoded, bool):
            return str(decoded)
        return value
    return str(value)


def sagemaker_defaults(environ: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Argument defaults (locations) and hyperparameters by argument name, from SageMaker's contract."""
    env = os.environ if environ is None else environ
    if "SM_MODEL_DIR" not in env:
        return {}, {}
    defaults = {"model_uri": env["SM_MODEL_DIR"]}
    channel = env.get("SM_CHANNEL_TRAINING") or env.get("SM_CHANNEL_TRAIN")
    if channel:
        defaults["data_uri"] = channel
    defaults["checkpoint_uri"] = env.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints")
    if "SM_OUTPUT_DATA_DIR" in env:
        defaults["output_dir"] = env["SM_OUTPUT_DATA_DIR"]
    config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    hp_file = config_dir / "hyperparameters.json"
    hyperparameters: dict[str, str] = {}
    if hp_file.exists():
        # SageMaker stores every hyperparameter value as a string; the SDK's framework
        # estimators JSON-encode them first ('"s3://b/x"'), plain requests do not ('5').
        for key, value in json.loads(hp_file.read_text()).items():
            if not key.startswith("sagemaker_"):
                hyperparameters[key.replace("-", "_")] = _hyperparameter_text(value)
    return defaults, hyperparameters


def _apply_hyperparameters(parser: argparse.ArgumentParser, hyperparameters: dict[str, str]) -> None:
    """Make each hyperparameter the default of the argument of its name.

    argparse converts a string default with the argument's own ``type`` when the command line
    does not give it, so a bad value fails exactly like a bad argument. A flag (``--no-onnx``)
    takes a yes/no (``true`` / ``false``...) under its destination's name (``onnx``).
    """
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = sorted(set(hyperparameters) - set(actions))
    if unknown:
        parser.error("unknown hyperparameter(s): " + ", ".join(unknown))
    defaults: dict[str, object] = {}
    for name, text in hyperparameters.items():
        if actions[name].nargs == 0:
            try:
                defaults[name] = parse_bool(text)
            except ValueError as exc:
                parser.error(f"hyperparameter {name}: {exc}")
        else:
            defaults[name] = text
    parser.set_defaults(**defaults)


def parse_args(
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    description: str = "Train a Fashion-MNIST classifier.",
) -> argparse.Namespace:
    """Parse the common training arguments plus the image's own (``add_arguments``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-uri", help="folder or s3:// prefix holding the four IDX .gz files")
    parser.add_argument("--model-uri", help=f"where the exported model and {METRICS} go")
    parser.add_argument("--checkpoint-uri", default=None, help="per-epoch checkpoints; resume from here")
    parser.add_argument("--output-dir", default=None, help="extra outputs (SageMaker output data)")
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULT_EPOCHS)
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--learning-rate", type=_positive_float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--limit-train", type=_positive_int, default=None, help="use the first N training images")
    parser.add_argument("--limit-test", type=_positive_int, default=None, help="use the first N test images")
    parser.add_argument("--seed", type=int, default=42)
    if add_arguments:
        add_arguments(parser)
    defaults, hyperparameters = sagemaker_defaults()
    parser.set_defaults(**defaults)
    _apply_hyperparameters(parser, hyperparameters)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    missing = [name for name in ("data_uri", "model_uri") if not getattr(args, name)]
    if missing:
        parser.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return args


def check_uris(args: argparse.Namespace, names: Sequence[str] = ("data_uri", "model_uri", "checkpoint_uri")) -> None:
    """Resolve each URI argument's filesystem now, so an unknown scheme fails before training."""
    from . import store

    for name in names:
        uri = getattr(args, name, None)
        if uri:
            try:
                store.filesystem(uri)
            except (ValueError, ImportError) as exc:
                raise ValueError(f"--{name.replace('_', '-')} {uri!r}: {exc}") from exc


def exit_now(status: int) -> NoReturn:
    """End an entrypoint whose work is done: flush its output and skip the interpreter's teardown.

    Every file the entrypoint wrote is closed by then; what is left is tearing down TensorFlow's
    modules and threads, 0.7 s per process on 2 cores, paid by each training and evaluation run.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
