"""The main job in one Airflow process: the training DAG and its report, then the deployment DAG
and its report (``scripts/run_local.sh`` runs this after the set-up for ``make run``, local
profile; ``scripts/run_node.py`` reuses it for ``make run-node``, kubernetes profile).

Each DAG runs as ``airflow dags test <dag> --dagfile-path <its file>`` runs it (the same CLI
function), but both in this process: two ``airflow dags test`` processes paid Airflow's start-up
twice (the import, parsing every DAG file, the in-process execution API; about 10 s each on 2
cores), and the reports were two more processes importing Airflow to read the same database.

Each DAG's whole log goes to its own file; the terminal gets ``report.condense``'s lines while
it runs, then the report. Every phase's start and end go to the timings file that
``python -m eksml.breakdown`` reads.

    python -m eksml.main_job --conf '{"epochs": 1}' --log-dir .local/airflow --timings .local/run-timings
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from eksml.breakdown import record_timing
from eksml.report import DAGS, condense, latest_run_state, report_serving, report_training

#: Per report section: the DAG's file in the DAGs folder (only it is parsed), the file its whole
#: log goes to, and the timings file's phases (eksml.breakdown.PHASES) of the run and the report.
SECTIONS = {
    "training": ("fashion_mnist_training.py", "last-training.log", "training-dag", "report-training"),
    "serving": ("model_deployment.py", "last-deployment.log", "deployment-dag", "report-serving"),
}
#: Airflow's default bundle, the DAGs folder. Naming it makes `dags test` parse the DAG's file
#: without first writing it to the database: ``DAG.test`` writes the whole bundle anyway, and the
#: extra write cost about a second per run (every task's params are validated again on serializing).
BUNDLE = "dags-folder"
#: How long the log copier may take to reach the end of a finished DAG's output.
_DRAIN_TIMEOUT_S = 30.0


@contextlib.contextmanager
def condensed_output(log_path: Path) -> Iterator[None]:
    """While inside: everything written to fds 1 and 2 (this process's and its children's) goes
    whole to ``log_path`` and condensed to the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    read_end, write_end = os.pipe()
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1)

    def copy() -> None:
        with open(read_end, errors="replace") as pipe, open(log_path, "w", buffering=1) as log:

            def logged() -> Iterator[str]:
                for line in pipe:
                    log.write(line)
                    yield line

            for shown in condense(logged()):
                terminal.write(shown + "\n")

    copier = threading.Thread(target=copy, name="dag-log-copier", daemon=True)
    copier.start()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)  # the pipe's last write ends close: the copier reads to its end
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        copier.join(_DRAIN_TIMEOUT_S)
        terminal.close()


#: What a refused CONF is told to do (one line, with the refusal).
CONF_FIX = (
    "fix: make run CONF='{\"epochs\": 3}' (a JSON object of the training params; names, types and limits: "
    'docs/operations.md, "Trigger-form parameters of the training DAG")'
)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows (params must be finite numbers)")


def conf_problem(text: str) -> str | None:
    """Why the training run's conf would be refused (None if it is good), before Airflow is even imported.

    The same check the first task makes (``validate_training_params``): a refusal costs nothing
    here, where inside ``airflow dags test`` it is a traceback after Airflow's start-up.
    """
    from eksml.params import ParamsError, validate_training_params

    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        return f"is not JSON ({exc}): {text[:200]!r}"
    if not isinstance(value, dict):
        return f"is not a JSON object: {text[:200]!r}"
    try:
        validate_training_params(value)
    except ParamsError as exc:
        return f"refused: {exc}"
    return None


def dags_test(dag_id: str, dag_file: Path, conf: str | None, debug: bool = False) -> bool:
    """``airflow dags test`` in this process; True when it ran the DAG and the run succeeded.

    An exception out of it (a refused conf, a DAG that does not load) is one line on stderr;
    its traceback only with ``debug`` (the task logs keep theirs).
    """
    from airflow.cli import cli_parser

    argv = ["dags", "test", dag_id, "--dagfile-path", str(dag_file), "--bundle-name", BUNDLE]
    argv += ["--conf", conf] if conf else []
    args = cli_parser.get_parser().parse_args(argv)
    try:
        args.func(args)
    except SystemExit as exc:  # "DagRun failed"; the report below says which tasks
        return exc.code in (None, 0)
    except Exception as exc:
        if debug:
            raise
        message = " ".join(str(exc).split())[:500]
        print(f"{dag_id}: {type(exc).__name__}: {message} (traceback: EKSML_DEBUG=1 make run ...)", file=sys.stderr)
        return False
    return True


def run(
    section: str, conf: str | None, dags_folder: Path, log_dir: Path, timings: Path, started: float, debug: bool = False
) -> bool:
    """One DAG run and its report; False when the run failed (its failed tasks printed)."""
    dag_id = DAGS[section]
    dag_file, log_name, dag_phase, report_phase = SECTIONS[section]
    log_path = log_dir / log_name
    print(f"== {dag_id}{f' (conf: {conf})' if conf else ''}\n   full log: {log_path}", flush=True)
    with condensed_output(log_path):
        succeeded = dags_test(dag_id, dags_folder / dag_file, conf, debug)
    ended = time.time()
    record_timing(timings, dag_phase, started, ended)
    state, failed, run_id = latest_run_state(dag_id)
    # Both: a `dags test` that stopped before creating a run leaves an older run the newest.
    if not succeeded or state != "success":
        print(
            f"{dag_id}: the run did not succeed (newest run: {state or 'none'}; failed tasks: "
            f"{', '.join(failed) or '-'}; log: {log_path})",
            file=sys.stderr,
        )
        return False
    report_training(run_id) if section == "training" else report_serving()
    sys.stdout.flush()
    record_timing(timings, report_phase, ended, time.time())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=None, help="the training run's conf (a JSON object)")
    parser.add_argument("--dags-folder", type=Path, default=Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", "dags")))
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--timings", type=Path, required=True)
    parser.add_argument(
        "--started",
        type=float,
        default=time.time(),
        help="epoch seconds when this process was launched: its start-up is part of the first DAG's phase",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("EKSML_DEBUG", "") not in ("", "0"),
        help="show the traceback of an error (default: one line; EKSML_DEBUG=1)",
    )
    args = parser.parse_args(argv)
    problem = args.conf is not None and conf_problem(args.conf)
    if problem:
        print(f"error: CONF {problem}; {CONF_FIX}", file=sys.stderr)
        return 2
    if not run("training", args.conf, args.dags_folder, args.log_dir, args.timings, args.started, args.debug):
        return 1
    return 0 if run("serving", None, args.dags_folder, args.log_dir, args.timings, time.time(), args.debug) else 1


if __name__ == "__main__":
    sys.exit(main())
