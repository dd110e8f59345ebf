# The main job's Airflow environment, one home for scripts/run_local.sh (make run) and
# scripts/run_node.sh (make run-node). Sourced, not run: `airflow_env <AIRFLOW_HOME>` exports it.
airflow_env() {
  local root; root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  export AIRFLOW_HOME="$1"
  export AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
  export AIRFLOW__CORE__PLUGINS_FOLDER="$root/plugins"
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="${AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT:-300}"
  export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
  # Deferrable operators' default follows this option (`dags test` runs their triggers in-process).
  export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="${AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE:-True}"
  export PYTHONPATH="$root/plugins${PYTHONPATH:+:$PYTHONPATH}"
  mkdir -p "$AIRFLOW_HOME"
}
