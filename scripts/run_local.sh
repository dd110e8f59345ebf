#!/usr/bin/env bash
# The main job in the local profile: set up (idempotent), then run the training DAG and the
# deployment DAG end to end with a real Airflow (both `dags test` runs in one process), and print where the
# model went, its test accuracy and predictions of the served model.
# Usage: scripts/run_local.sh ['{"framework": "both", "epochs": 3}']
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
conf="${1:-}"; [ -n "$conf" ] || conf="{}"
start=$(date +%s)
# step "title" command...: one line when it starts, its duration when it ends.
step() {
  local title="$1" t0; shift; t0=$(date +%s)
  echo "== $title"
  "$@"
  echo "   ($title: $(( $(date +%s) - t0 )) s)"
}
# timed NAME command...: its start and end go to a timings file; the breakdown at the end reads it
# (python -m eksml.breakdown).
mkdir -p .local; timings=".local/run-timings"; : >"$timings"
timed() { local name="$1" t0 rc=0; shift; t0=$(date +%s.%N); "$@" || rc=$?; echo "$name $t0 $(date +%s.%N)" >>"$timings"; return $rc; }
timed setup step "set-up (Debian packages, uv, .venv, one virtualenv per image)" scripts/setup.sh

source scripts/airflow_env.sh
airflow_env "$root/.local/airflow"
migrate() {
  .venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
}
# Migrating the database and loading pools/variables/connections each pay Airflow's start-up
# (seconds); they only matter when the Airflow install, the settings or the database changed.
prepared="$AIRFLOW_HOME/.prepared"
want_prepared="$(cat .venv/.requirements.sha256 include/airflow_settings.yaml plugins/eksml/airflow_objects.py | sha256sum | cut -d' ' -f1)"
if [ -f "$AIRFLOW_HOME/airflow.db" ] && [ "$(cat "$prepared" 2>/dev/null)" = "$want_prepared" ]; then
  echo "== Airflow metadata database, pools, variables, connections: up to date"
else
  rm -f "$prepared"
  timed db-migrate step "Airflow metadata database ($AIRFLOW_HOME)" migrate
  timed settings step "pools, variables, connections (include/airflow_settings.yaml)" .venv/bin/python -m eksml.airflow_objects
  echo "$want_prepared" >"$prepared"
fi

# Both DAGs run in one Airflow process (python -m eksml.main_job): each DAG's whole log goes to a
# file; the terminal gets task starts/ends with durations, the per-epoch lines of training, the
# outcome (eksml.report's condensed view) and each run's report.
.venv/bin/python -m eksml.main_job --conf "$conf" --log-dir "$AIRFLOW_HOME" --timings "$timings" --started "$(date +%s.%N)"
echo "== done in $(( $(date +%s) - start )) s"
.venv/bin/python -m eksml.breakdown "$timings" || echo "(no time breakdown: $timings)"
