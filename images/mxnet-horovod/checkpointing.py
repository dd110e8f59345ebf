"""Per-epoch checkpoints of the network and its optimizer, on top of trainkit's CheckpointStore.

A checkpoint holds the parameters (batch-norm statistics included) and the optimizer state
(Adam moments), so a resumed run continues the same trajectory instead of restarting Adam.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from trainkit.checkpoints import CheckpointStore

PARAMS_FILE = "net.params"
STATES_FILE = "trainer.states"


def save_checkpoint(store: CheckpointStore, epoch: int, net: Any, trainer: Any, history: list[dict]) -> None:
    """Write epoch ``epoch`` (rank 0 only calls this); latest.json moves last."""
    with tempfile.TemporaryDirectory(prefix="mx-ckpt-") as tmp:
        net.save_parameters(str(Path(tmp) / PARAMS_FILE))
        trainer.save_states(str(Path(tmp) / STATES_FILE))
        store.save(epoch, tmp, history)


def load_checkpoint(
    store: CheckpointStore, epoch: int, net: Any, trainer: Any, learning_rate: float, ctx: Any = None
) -> None:
    """Load epoch ``epoch`` into ``net`` and ``trainer`` (every rank calls this).

    The learning rate is set again afterwards: the saved optimizer carries the rate of the
    run that wrote it, which had maybe a different number of workers.
    """
    folder = store.restore(epoch)
    try:
        for name in (PARAMS_FILE, STATES_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"checkpoint epoch {epoch} at {store.uri} lacks {name}")
        net.load_parameters(str(folder / PARAMS_FILE), ctx=ctx)
        trainer.load_states(str(folder / STATES_FILE))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    trainer.set_learning_rate(learning_rate)
