"""What the end-to-end tests read of a ``dag.test()`` run and of the store it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from project_files import load_dag


def training_dag() -> Any:
    """The training DAG as the dag-processor loads it (a fresh DagBag: no import errors)."""
    return load_dag("fashion_mnist_training")


def task_states(run: Any) -> dict[str, str]:
    """State per task; a mapped task instance is named ``task[i]``."""
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state)
        for ti in run.get_task_instances()
    }


def registered_versions(store: Path) -> dict[str, dict]:
    """Registered model versions in a ``file://`` store: name -> metadata.json, in name order."""
    models = store / "models" / "fashion-mnist"
    if not models.exists():
        return {}
    return {
        p.name: json.loads((p / "metadata.json").read_text())
        for p in sorted(models.iterdir())
        if (p / "metadata.json").exists()
    }
