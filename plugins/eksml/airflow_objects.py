"""Load ``include/airflow_settings.yaml`` (pools, variables, connections) into Airflow.

The file follows the Astro CLI's schema (``airflow: connections / pools / variables`` with
``conn_*``, ``pool_*`` and ``variable_*`` fields), so the Astro CLI and this loader read the
same file; this loader is for the project's own ways of starting Airflow (``make run``, the
standalone helper, the Docker stack). The whole file is checked before anything is written.

Idempotent: pools are created or resized; existing variables and connections are kept
(a user's edits are never clobbered). Run with ``python -m eksml.airflow_objects``.

Connections are written through Airflow's Python API, never ``airflow connections add``: the
CLI records every command line in the metadata database's ``log`` table, and it masks only
``--conn-password``, not a password in ``--conn-uri`` or a token in ``--conn-extra``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from eksml.errors import InvalidInput
from eksml.settings import PROJECT_ROOT

DEFAULT_FILE = PROJECT_ROOT / "include" / "airflow_settings.yaml"

#: The Astro CLI's fields (``settings/types.go`` of astronomer/astro-cli).
CONNECTION_FIELDS = frozenset(
    {
        "conn_id",
        "conn_type",
        "conn_host",
        "conn_schema",
        "conn_login",
        "conn_password",
        "conn_port",
        "conn_uri",
        "conn_extra",
    }
)
POOL_FIELDS = frozenset({"pool_name", "pool_slot", "pool_description"})
VARIABLE_FIELDS = frozenset({"variable_name", "variable_value"})


class AirflowSettingsError(InvalidInput):
    """The file does not follow the schema; nothing was written."""


def _entries(section: dict[str, Any], key: str, allowed: frozenset[str], path: Path) -> list[dict[str, Any]]:
    entries = section.get(key) or []
    if not isinstance(entries, list):
        raise AirflowSettingsError(f"{path}: airflow.{key} must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AirflowSettingsError(f"{path}: airflow.{key}[{i}] must be a mapping")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise AirflowSettingsError(
                f"{path}: airflow.{key}[{i}] has unknown field(s) {', '.join(unknown)} "
                f"(the Astro CLI's are {', '.join(sorted(allowed))})"
            )
    return entries


def load_file(path: Path = DEFAULT_FILE) -> dict[str, list[dict[str, Any]]]:
    """The file's connections, pools and variables, checked against the Astro CLI's schema."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"airflow"}:
        raise AirflowSettingsError(f"{path}: the top level must be one mapping, airflow (Astro CLI schema)")
    section = data.get("airflow") or {}
    unknown = sorted(set(section) - {"connections", "pools", "variables"})
    if unknown:
        raise AirflowSettingsError(f"{path}: unknown section(s) airflow.{', airflow.'.join(unknown)}")
    connections = _entries(section, "connections", CONNECTION_FIELDS, path)
    pools = _entries(section, "pools", POOL_FIELDS, path)
    variables = _entries(section, "variables", VARIABLE_FIELDS, path)
    for conn in connections:
        if not conn.get("conn_id") or not (conn.get("conn_type") or conn.get("conn_uri")):
            raise AirflowSettingsError(f"{path}: every connection needs conn_id and conn_type (or conn_uri): {conn}")
    for pool in pools:
        slots = pool.get("pool_slot")
        if not pool.get("pool_name") or not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
            raise AirflowSettingsError(f"{path}: pool {pool.get('pool_name')!r}: pool_slot must be an integer >= 1")
    for var in variables:
        if not var.get("variable_name") or not isinstance(var.get("variable_value"), str):
            raise AirflowSettingsError(
                f"{path}: variable {var.get('variable_name')!r}: variable_value must be a string "
                "(JSON in quotes for a JSON variable)"
            )
    return {"connections": connections, "pools": pools, "variables": variables}


def _connection(conn: dict[str, Any]) -> Any:
    from airflow.models import Connection

    if conn.get("conn_uri"):
        return Connection(conn_id=conn["conn_id"], uri=conn["conn_uri"])
    extra = conn.get("conn_extra")
    return Connection(
        conn_id=conn["conn_id"],
        conn_type=conn["conn_type"],
        host=conn.get("conn_host"),
        schema=conn.get("conn_schema"),
        login=conn.get("conn_login"),
        password=conn.get("conn_password"),
        port=conn.get("conn_port"),
        extra=extra if isinstance(extra, str) or extra is None else json.dumps(extra),
    )


def apply(data: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Create or update everything in ``data`` (from :func:`load_file`); return one line per action."""
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    actions = []
    with create_session() as session:
        for pool in data["pools"]:
            name, slots = pool["pool_name"], pool["pool_slot"]
            existing = session.query(Pool).filter(Pool.pool == name).one_or_none()
            if existing is None:
                session.add(
                    Pool(pool=name, slots=slots, description=pool.get("pool_description"), include_deferred=False)
                )
                actions.append(f"pool {name}: created ({slots} slots)")
            else:
                existing.slots = slots
                existing.description = pool.get("pool_description")
                actions.append(f"pool {name}: {slots} slots")
        for var in data["variables"]:
            key = var["variable_name"]
            if session.query(Variable).filter(Variable.key == key).one_or_none() is not None:
                actions.append(f"variable {key}: kept")
                continue
            Variable.set(key, var["variable_value"], session=session)
            actions.append(f"variable {key}: created")
        for conn in data["connections"]:
            if session.query(Connection).filter(Connection.conn_id == conn["conn_id"]).one_or_none():
                actions.append(f"connection {conn['conn_id']}: kept")
                continue
            session.add(_connection(conn))
            actions.append(f"connection {conn['conn_id']}: created")
    return actions


#: The connection the training DAG writes run notes with (Airflow's REST API, as ``admin``).
AIRFLOW_API_CONN_ID = "eksml_airflow_api"


def replace_airflow_api_connection(host: str, password_file: Path) -> str:
    """(Re)create the REST API connection with the admin password read from the auth manager's file
    (so the password is in no command line and no log)."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    password = json.loads(password_file.read_text())["admin"]
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == AIRFLOW_API_CONN_ID).delete()
        session.add(
            Connection(conn_id=AIRFLOW_API_CONN_ID, conn_type="http", host=host, login="admin", password=password)
        )
    return f"connection {AIRFLOW_API_CONN_ID}: replaced ({host})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--airflow-api-host", help=f"also (re)create {AIRFLOW_API_CONN_ID} for this REST API URL")
    parser.add_argument("--admin-password-file", type=Path, help="the simple auth manager's generated passwords")
    args = parser.parse_args(argv)
    if bool(args.airflow_api_host) != bool(args.admin_password_file):
        parser.error("--airflow-api-host and --admin-password-file go together")
    try:
        data = load_file(args.file)
    except AirflowSettingsError as exc:
        raise SystemExit(f"error: {exc}") from None
    for line in apply(data):
        print(line)
    if args.airflow_api_host:
        print(replace_airflow_api_connection(args.airflow_api_host, args.admin_password_file))


if __name__ == "__main__":
    main()
