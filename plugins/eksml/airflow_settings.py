"""Load ``include/airflow_settings.yaml`` (pools, variables, connections) into Airflow.

Idempotent: pools are created or resized; existing variables and connections are kept
(a user's edits are never clobbered). Run with ``python -m eksml.airflow_settings``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from eksml.settings import PROJECT_ROOT

DEFAULT_FILE = PROJECT_ROOT / "include" / "airflow_settings.yaml"


def load_file(path: Path = DEFAULT_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    for pool in data.get("pools", []):
        if int(pool["slots"]) < 1:
            raise ValueError(f"pool {pool['name']}: slots must be >= 1")
    return data


def apply(data: dict[str, Any]) -> list[str]:
    """Create or update everything in ``data``; return one line per action."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    actions = []
    with create_session() as session:
        for pool in data.get("pools", []):
            existing = session.query(Pool).filter(Pool.pool == pool["name"]).one_or_none()
            if existing is None:
                session.add(
                    Pool(
                        pool=pool["name"],
                        slots=pool["slots"],
                        description=pool.get("description"),
                        include_deferred=False,
                    )
                )
                actions.append(f"pool {pool['name']}: created ({pool['slots']} slots)")
            else:
                existing.slots = pool["slots"]
                existing.description = pool.get("description")
                actions.append(f"pool {pool['name']}: {pool['slots']} slots")
        for key, spec in (data.get("variables") or {}).items():
            if session.query(Variable).filter(Variable.key == key).one_or_none() is not None:
                actions.append(f"variable {key}: kept")
                continue
            value = spec.get("value")
            Variable.set(
                key,
                json.dumps(value) if not isinstance(value, str) else value,
                description=spec.get("description"),
                session=session,
            )
            actions.append(f"variable {key}: created")
        for conn in data.get("connections", []):
            if session.query(Connection).filter(Connection.conn_id == conn["conn_id"]).one_or_none():
                actions.append(f"connection {conn['conn_id']}: kept")
                continue
            session.add(
                Connection(
                    conn_id=conn["conn_id"],
                    conn_type=conn["conn_type"],
                    description=conn.get("description"),
                    extra=json.dumps(conn.get("extra") or {}),
                )
            )
            actions.append(f"connection {conn['conn_id']}: created")
    return actions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    for line in apply(load_file(parser.parse_args(argv).file)):
        print(line)


if __name__ == "__main__":
    main()
