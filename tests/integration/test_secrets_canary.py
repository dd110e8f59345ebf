"""No secret a user sets up reaches Airflow's metadata database in clear, its logs or the store.

A canary secret goes everywhere a user puts one: the settings file's connection (password,
session token in the extra, password inside a URI), the admin password file the Docker stack's
init reads for the REST API connection, and the environment (an ``AIRFLOW_CONN_*`` variable,
``AWS_SESSION_TOKEN``). Then the project's own set-up runs against a real SQLite metadata
database with a Fernet key, as ``make run`` and docker/init.sh run it, and the database file
(every table: ``connection``, ``log``, ``xcom``...), AIRFLOW_HOME (logs) and the store are
searched for the canaries. A control written through ``airflow connections add --conn-extra``
(what the set-up no longer does) is found in the ``log`` table, so the search can fail.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _everything_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_canary_secrets_reach_no_log_table_log_file_xcom_or_store(tmp_path):
    from cryptography.fernet import Fernet

    canary = {place: f"CANARY{uuid.uuid4().hex}" for place in ("password", "token", "uri", "api", "env", "aws_env")}
    control = f"CONTROL{uuid.uuid4().hex}"
    home, store = tmp_path / "airflow", tmp_path / "store"
    home.mkdir()
    store.mkdir()
    settings_file = tmp_path / "airflow_settings.yaml"
    settings_file.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "airflow": {
                    "connections": [
                        {
                            "conn_id": "aws_default",
                            "conn_type": "aws",
                            "conn_login": "AKIDEXAMPLE",
                            "conn_password": canary["password"],
                            "conn_extra": {"region_name": "us-west-2", "aws_session_token": canary["token"]},
                        },
                        {"conn_id": "by_uri", "conn_uri": f"postgresql://user:{canary['uri']}@db.example:5432/x"},
                    ],
                    "pools": [],
                    "variables": [{"variable_name": "eksml_settings", "variable_value": "{}"}],
                }
            }
        )
    )
    passwords = tmp_path / "simple_auth_manager_passwords.json.generated"
    passwords.write_text(json.dumps({"admin": canary["api"]}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EKSML_", "AWS_"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_CONN_FROM_ENV": json.dumps({"conn_type": "aws", "password": canary["env"]}),
        "AWS_SESSION_TOKEN": canary["aws_env"],
        "EKSML_STORE_URI": store.as_uri(),
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    output = _run([airflow, "db", "migrate"], env)
    output += _run(
        [
            sys.executable,
            "-m",
            "eksml.airflow_objects",
            str(settings_file),
            "--airflow-api-host",
            "http://airflow-apiserver:8080",
            "--admin-password-file",
            str(passwords),
        ],
        env,
    )
    assert "connection eksml_airflow_api: replaced" in output
    # The connections work: each secret is there for the code that asks Airflow for it.
    read = _run(
        [
            sys.executable,
            "-c",
            "from airflow.models import Connection as C; import json; print(json.dumps(["
            "C.get_connection_from_secrets('aws_default').password,"
            "C.get_connection_from_secrets('aws_default').extra_dejson['aws_session_token'],"
            "C.get_connection_from_secrets('by_uri').password,"
            "C.get_connection_from_secrets('eksml_airflow_api').password,"
            "C.get_connection_from_secrets('from_env').password]))",
        ],
        env,
    )
    assert json.loads(read.strip().splitlines()[-1]) == [canary[k] for k in ("password", "token", "uri", "api", "env")]
    # The control: a token through the CLI's --conn-extra lands in the log table in clear.
    _run(
        [airflow, "connections", "add", "control", "--conn-type", "aws", "--conn-extra", json.dumps({"t": control})],
        env,
    )

    database = home / "airflow.db"
    with sqlite3.connect(database) as db:
        log_rows = " ".join(str(row) for row in db.execute("SELECT * FROM log"))
        xcom_rows = " ".join(str(row) for row in db.execute("SELECT * FROM xcom"))
    assert control in log_rows, "the control did not reach the log table: the search proves nothing"
    haystacks = {
        "metadata database": _everything_under(home).replace(control.encode(), b""),
        "log table": log_rows.encode(),
        "xcom": xcom_rows.encode(),
        "store": _everything_under(store),
        "set-up output": output.encode(),
    }
    assert database.stat().st_size > 0
    found = {
        (where, place)
        for where, text in haystacks.items()
        for place, secret in canary.items()
        if secret.encode() in text
    }
    assert found == set(), f"canary secrets found in clear: {sorted(found)}"
