"""Per-epoch checkpoints of the Keras model, on top of trainkit's CheckpointStore.

Each checkpoint is ``model.keras`` (weights, batch-norm statistics and the Adam state, so a
resumed run continues the same optimisation) plus ``config.json``: the settings that must match
for resuming to make sense. A checkpoint written under other settings is refused before any
training, instead of silently mixing two runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trainkit import store
from trainkit.checkpoints import CheckpointStore

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"


class CheckpointMismatch(ValueError):
    """The checkpoint location holds a run with other settings."""


def fingerprint(args: argparse.Namespace, train_images: int, test_images: int) -> dict[str, Any]:
    """Settings a resumed run must share with the run that wrote the checkpoint (not epochs)."""
    from network import DEFAULT_RECIPE

    return {
        "framework": "tensorflow",
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "recipe": DEFAULT_RECIPE.to_dict(),
        "validation_images": args.validation_images,
        "seed": args.seed,
        "train_images": train_images,
        "test_images": test_images,
    }


def resume_point(ckpt: CheckpointStore, expected: dict[str, Any]) -> int:
    """Last finished epoch to resume from (0: start afresh); reads JSON only, no TensorFlow."""
    epoch = ckpt.latest_epoch()
    if epoch == 0:
        return 0
    config_uri = store.join(ckpt.uri, f"epoch-{epoch:04d}", CONFIG_FILE)
    if not store.exists(config_uri):
        raise CheckpointMismatch(
            f"checkpoint {ckpt.uri} epoch {epoch} has no {CONFIG_FILE}: "
            "not written by this image; use a fresh --checkpoint-uri"
        )
    found = store.read_json(config_uri)
    differ = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if differ:
        detail = ", ".join(f"{k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in differ.items())
        raise CheckpointMismatch(
            f"checkpoint {ckpt.uri} was written with other settings ({detail}); "
            "use a fresh --checkpoint-uri or the same settings"
        )
    return epoch


def save_checkpoint(ckpt: CheckpointStore, epoch: int, model: Any, config: dict[str, Any], history: list[dict]) -> None:
    """Write epoch ``epoch``; trainkit moves latest.json only after the files are in place."""
    with tempfile.TemporaryDirectory(prefix="tf-ckpt-") as tmp:
        model.save(str(Path(tmp) / MODEL_FILE))
        (Path(tmp) / CONFIG_FILE).write_text(json.dumps(config, sort_keys=True))
        ckpt.save(epoch, tmp, history)


def load_checkpoint(ckpt: CheckpointStore, epoch: int) -> Any:
    """The compiled model (optimizer state included) of epoch ``epoch``."""
    import keras

    folder = ckpt.restore(epoch)
    try:
        path = folder / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint epoch {epoch} at {ckpt.uri} lacks {MODEL_FILE}")
        return keras.models.load_model(str(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
