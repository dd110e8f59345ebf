"""The commands a user runs against AWS end in one line with the fix, not a traceback.

Run as a user would (``python -m ...`` in a fresh process) with no AWS credentials anywhere:
no environment keys, an empty home (no ~/.aws), no instance metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_module(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW_CONN_", "EKSML_"))}
    env |= {
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "PYTHONPATH": str(ROOT / "plugins"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "EKSML_PROFILE": "aws",
        "EKSML_STORE_URI": "s3://eksml-test-bucket/store",
    }
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize("command", [["eksml.cluster", "connection"], ["eksml.preflight"]])
def test_no_credentials_is_one_line_with_the_fix(tmp_path, command):
    result = run_module(tmp_path, *command)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no AWS credentials found: run `aws configure`"), last
    assert last.endswith("(add --debug for the traceback)")


def test_debug_shows_the_traceback(tmp_path):
    result = run_module(tmp_path, "eksml.cluster", "connection", "--debug")
    assert "Traceback" in result.stderr and "NoCredentialsError" in result.stderr
