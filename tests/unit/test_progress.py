"""What `make run` prints while a DAG runs (eksml.report.condense over the DAG's log, in eksml.main_job).

The fixture is an excerpt of a real `airflow dags test fashion_mnist_training` log of this
project (paths shortened): it holds the lines that used to reach the terminal by mistake.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from eksml.main_job import condensed_output, main
from eksml.report import condense

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "tests" / "fixtures" / "logs" / "dags-test-training.log"


def test_shows_tasks_with_durations_epochs_and_outcome_but_no_false_alarms():
    shown = list(condense(LOG.read_text().splitlines()))
    text = "\n".join(shown)
    assert "18:59:25  train_tensorflow: started" in shown
    assert "18:59:52  train_tensorflow: finished in 27 s" in shown
    assert "evaluate[0]: finished in 42 s" in text
    # The per-epoch line of training, without the workload's own timestamp.
    (epoch,) = [line for line in shown if "epoch 1/1" in line]
    assert epoch.startswith("18:59:47    epoch 1/1 loss=0.8465 accuracy=0.7180")
    assert "registered 20261123T030000-tensorflow-637fe8" in text and "promoted " in text
    assert text.endswith(": successful")
    # False alarms and walls of text stay in the log file.
    for noise in (
        "cuInit",
        "UNKNOWN ERROR (303)",
        "Returned value was",
        "Condition result",
        "EKSML_RESULT",
        "absl::InitializeLog",
        "{'version'",
    ):
        assert noise not in text, noise
    assert max(len(line) for line in shown) < 200


def test_errors_and_their_traceback_are_shown():
    lines = [
        "2026-11-29T19:00:00.000000Z [info     ] [DAG TEST] starting task_id=register map_index=-1 [airflow.sdk.definitions.dag] loc=dag.py:1",  # noqa: E501 (a log line as written)
        "2026-11-29T19:00:01.000000Z [error    ] Task failed with exception [task] loc=task_runner.py:1",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "eksml.registry.RegistryError: no candidate finished training: nothing registered",
        "2026-11-29T19:00:02.000000Z [info     ] Marking run <DagRun fashion_mnist_training @ 2026-11-29: manual__1, state:running, queued_at: None. run_type: manual> failed [airflow.models.dagrun.DagRun] loc=dagrun.py:1",  # noqa: E501 (a log line as written)
    ]
    shown = list(condense(lines))
    assert shown[1] == "19:00:01    ERROR Task failed with exception"
    assert shown[2:5] == lines[2:5]
    assert shown[-1] == "19:00:02  run manual__1: failed"


def test_make_run_runs_both_dags_in_one_process_through_it():
    script = (ROOT / "scripts" / "run_local.sh").read_text()
    assert "python -m eksml.main_job" in script and "airflow dags test" not in script


def test_the_dag_output_of_the_process_and_its_children_goes_whole_to_the_log_and_condensed_to_the_terminal(
    tmp_path, capfd
):
    log = tmp_path / "last-training.log"
    lines = LOG.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    with condensed_output(log):
        os.write(1, "".join(lines[:half]).encode())
        # A child (a task's subprocess) writes to the same fds, straight past Python's buffers.
        subprocess.run(["cat"], input="".join(lines[half:]), text=True, check=True)
    assert log.read_text() == "".join(lines)
    shown = capfd.readouterr().out.splitlines()
    assert shown == list(condense(lines))
    assert "18:59:52  train_tensorflow: finished in 27 s" in shown
    # Afterwards the process writes to the terminal again.
    print("after")
    assert capfd.readouterr().out == "after\n"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ('{"epochs": 1', "is not JSON"),
        ("[1]", "is not a JSON object"),
        ('{"learning_rate": NaN}', "NaN is not a number JSON allows"),
        ('{"learning_rate": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"epochs": 100000}', "param 'epochs' must be <="),
        ('{"epochs": "three"}', "param 'epochs' must be of type integer"),
        ('{"epoch": 3}', "unknown param(s): epoch"),
    ],
)
def test_a_refused_conf_is_one_line_with_the_fix_before_any_dag_runs(tmp_path, capsys, conf, message):
    # `airflow dags test` refused such a conf with a traceback after Airflow's start-up (NaN as
    # "None is not of type 'number'"), or exited before creating a run, and the report then
    # read the previous run of the DAG as this one's outcome.
    timings = tmp_path / "run-timings"
    assert main(["--conf", conf, "--log-dir", str(tmp_path), "--timings", str(timings)]) == 2
    err = capsys.readouterr().err
    assert message in err and "fix: make run CONF=" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not timings.exists() and not (tmp_path / "last-training.log").exists()


def test_horovod_rank_zero_progress_reaches_the_terminal(caplog):
    """MXNet + Horovod runs under ``horovodrun``, which prefixes each rank's lines (``[0]<stdout>:``,
    as printed by horovodrun 0.28.1 here); rank 0's per-epoch line must be shown like TensorFlow's."""
    import logging

    from eksml.local.runner import log_line

    workload = [
        "[1]<stdout>:2026-12-07 01:58:10,853 INFO rank 1/2: done; rank 0 exports the model",
        "[0]<stdout>:2026-12-07 01:58:11,013 INFO epoch 1/5 loss=0.6012 accuracy=0.7811 images/s=900 time=30.1s "
        "left=120s (2 workers)",
    ]
    with caplog.at_level(logging.INFO, logger="airflow.task"):
        for line in workload:
            log_line(logging.getLogger("airflow.task"), line)
    task_log = [
        f"2026-12-07T01:58:11.100000Z [info     ] {r.getMessage()} [airflow.task] loc=runner.py:1"
        for r in caplog.records
    ]
    shown = list(condense(task_log))
    assert shown == ["01:58:11    epoch 1/5 loss=0.6012 accuracy=0.7811 images/s=900 time=30.1s left=120s (2 workers)"]
    assert caplog.records[0].getMessage() == "[rank 1] rank 1/2: done; rank 0 exports the model"
