"""The main job's driver (``python -m eksml.main_job``, what ``make run`` runs after the set-up)
end to end on a metadata database that has never seen the DAGs: both DAG runs in one process,
their reports, the log files and the timings the breakdown reads.

A small slice of the real data (one epoch on 2,000 images) keeps it to about a minute; the
model server runs on a free port under a serving dir of its own, never the developer's.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import inference_models as im  # noqa: E402

pytestmark = pytest.mark.slow

# A log record at level error or above, in structlog's console layout ("[error    ]") or the
# standard library's ("ERROR -").
ERROR_LINE = re.compile(r"\[(error|critical|exception)\s*\]|\b(ERROR|CRITICAL) - ")


def test_both_dags_run_in_one_process_on_a_fresh_database(airflow_db, dataset_dir, tmp_path: Path) -> None:
    missing = im.missing_venvs("inference", "tf-fashion-mnist")
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "plugins"),
        "EKSML_PROFILE": "local",
        "EKSML_STORE_URI": (tmp_path / "store").as_uri(),
        "EKSML_INFERENCE_PORT": str(port),
        "EKSML_SOURCE_DATA_URI": str(dataset_dir),
        "EKSML_SERVING_DIR": str(tmp_path / "serving"),
    }
    conf = {"epochs": 1, "limit_train": 2000, "limit_test": 300}
    timings = tmp_path / "timings"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "eksml.main_job", "--conf", json.dumps(conf)]
            + ["--log-dir", str(tmp_path), "--timings", str(timings), "--started", str(time.time())],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "eksml.serving", "stop"], env=env, cwd=ROOT, capture_output=True, timeout=120
        )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert out.index("== fashion_mnist_training") < out.index("== model_deployment")
    assert out.count(": successful") == 2, out[-3000:]
    assert f"at http://127.0.0.1:{port}" in out
    # Both DAGs' whole logs went to their files, not to the terminal.
    training_log = (tmp_path / "last-training.log").read_text()
    deployment_log = (tmp_path / "last-deployment.log").read_text()
    assert "[DAG TEST] end task task_id=train_tensorflow" in training_log
    assert "[DAG TEST] end task task_id=deploy_and_smoke_test" in deployment_log
    # A successful run prints no ERROR line (e.g. the task runner's "XCom not found" when an
    # extra link's value was never pushed).
    errors = [line for line in (training_log + deployment_log).splitlines() if ERROR_LINE.search(line)]
    assert errors == [], errors
    assert "[DAG TEST]" not in out
    phases = [line.split()[0] for line in timings.read_text().splitlines()]
    assert phases == ["training-dag", "report-training", "deployment-dag", "report-serving"]
