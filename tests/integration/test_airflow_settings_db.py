"""The loader against a real (SQLite) metadata database: what it creates, and that a second run
keeps what a user changed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session
with create_session() as s:
    pools = {p.pool: (p.slots, p.description) for p in s.query(Pool)}
    conns = {c.conn_id: (c.conn_type, c.extra_dejson) for c in s.query(Connection)}
    print(repr((pools, conns, Variable.get("eksml_settings"))))
"""


def _run(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_loader_creates_then_keeps(tmp_path: Path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "EKSML_"))},
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    bin_dir = Path(sys.executable).parent
    _run([str(bin_dir / "airflow"), "db", "migrate"], env)
    first = _run([sys.executable, "-m", "eksml.airflow_objects"], env)
    assert "pool gpu: created (2 slots)" in first and "variable eksml_settings: created" in first
    assert "connection aws_default: created" in first
    pools, conns, variable = ast.literal_eval(_run([sys.executable, "-c", CHECK], env).strip().splitlines()[-1])
    assert pools["gpu"] == (2, "Simultaneous GPU training jobs (pods, MPIJobs, SageMaker jobs)")
    assert pools["eks_lifecycle"][0] == 1
    assert conns["aws_default"] == ("aws", {"region_name": "us-west-2"})
    assert conns["kubernetes_default"] == ("kubernetes", {"in_cluster": False})
    assert variable == "{}"

    # a user's edit survives a second load; the pools follow the file
    _run([str(bin_dir / "airflow"), "variables", "set", "eksml_settings", '{"profile": "aws"}'], env)
    second = _run([sys.executable, "-m", "eksml.airflow_objects"], env)
    assert "variable eksml_settings: kept" in second and "connection aws_default: kept" in second
    assert "pool gpu: 2 slots" in second
    assert (
        ast.literal_eval(_run([sys.executable, "-c", CHECK], env).strip().splitlines()[-1])[2] == '{"profile": "aws"}'
    )
