"""The project's own files loaded as Airflow and the scripts' users load them: a DAG file
through a DagBag, a script that is no package module by its path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_dag(dag_id: str, file: str | None = None) -> Any:
    """``dag_id`` from ``dags/<file>`` (default ``<dag_id>.py``) through a fresh DagBag, as the
    dag-processor parses it; an import error fails the test with its text."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / (file or f"{dag_id}.py")))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def load_script(name: str, path: Path) -> ModuleType:
    """The file at ``path`` as module ``name`` (registered in ``sys.modules``, which dataclasses
    need to resolve their annotations)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
