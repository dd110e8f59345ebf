#!/usr/bin/env bash
# The main job in the local profile: set up (idempotent), then run the training DAG and the
# deployment DAG end to end with a real Airflow (`airflow dags test`), and print where the
# model went, its test accuracy and predictions of the served model.
# Usage: scripts/run_local.sh ['{"framework": "both", "epochs": 3}']
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
conf="${1:-}"; [ -n "$conf" ] || conf="{}"
start=$(date +%s)
scripts/setup.sh

export AIRFLOW_HOME="$root/.local/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$root/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="${AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT:-300}"
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
export PYTHONPATH="$root/plugins${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$AIRFLOW_HOME"
.venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
.venv/bin/python -m eksml.airflow_settings

echo "== training run (conf: $conf)"
.venv/bin/airflow dags test fashion_mnist_training -c "$conf" 2>&1 | tee "$AIRFLOW_HOME/last-training.log" \
  | grep -E "EKSML_RESULT|promoted|gate refused|registered|ERROR|Traceback|FAILED|Marking run" || true
.venv/bin/python -m eksml.report training

echo "== deployment run"
.venv/bin/airflow dags test model_deployment 2>&1 | tee "$AIRFLOW_HOME/last-deployment.log" \
  | grep -E "deployed|smoke|serving|ERROR|Traceback|FAILED|Marking run" || true
.venv/bin/python -m eksml.report serving
echo "== done in $(( $(date +%s) - start )) s"
