#!/usr/bin/env bash
# One-shot initialisation of the Docker stack (service airflow-init), idempotent:
# Fernet key and admin password (generated at the first start, kept afterwards), metadata
# database schema, the project's pools/variables/connections (include/airflow_settings.yaml),
# the connection the training DAG writes run notes with, and the store's bucket.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then
  # The checks of Airflow's official compose file (warnings, as there), then the host folders
  # logs/ and config/ for AIRFLOW_UID; the rest runs as that user.
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  cpus=$(nproc)
  disk_kb=$(df -Pk / | awk 'NR == 2 {print $4}')
  [ "$mem_kb" -ge $((4 * 1024 * 1024)) ] || echo "WARNING: $((mem_kb / 1024)) MB of memory for Docker; at least 4 GB (8 GB to train) is recommended"
  [ "$cpus" -ge 2 ] || echo "WARNING: $cpus CPU for Docker; at least 2 are recommended"
  [ "$disk_kb" -ge $((10 * 1024 * 1024)) ] || echo "WARNING: $((disk_kb / 1024 / 1024)) GB of free disk for Docker; at least 10 GB is recommended"
  if [ -z "${AIRFLOW_UID:-}" ]; then
    echo "WARNING: AIRFLOW_UID is not set: logs/ and config/ will belong to uid 50000. On Linux run"
    echo "         echo AIRFLOW_UID=\$(id -u) > .env   before docker compose up"
  fi
  uid="${AIRFLOW_UID:-50000}"
  mkdir -p /opt/airflow/logs /opt/airflow/config
  chown -R "$uid:0" /opt/airflow/logs /opt/airflow/config /opt/airflow/auth
  exec setpriv --reuid="$uid" --regid=0 --clear-groups env HOME=/home/airflow bash "$0" "$@"
fi
echo "== secrets (first start only)"
python /opt/eksml/init_secrets.py /opt/airflow/auth
echo "== airflow db migrate"
airflow db migrate
echo "== pools, variables, connections (include/airflow_settings.yaml; eksml_airflow_api for run notes)"
# Through Airflow's Python API: the CLI would record its command line in the metadata database.
python -m eksml.airflow_objects /opt/airflow/include/airflow_settings.yaml \
  --airflow-api-host http://airflow-apiserver:8080 \
  --admin-password-file /opt/airflow/auth/simple_auth_manager_passwords.json.generated
echo "== data store"
python /opt/eksml/init_store.py
echo "== image virtualenvs"
for venv in /opt/airflow/.venvs/*/; do
  "$venv/bin/python" -c "import sys; print('$(basename "$venv")', sys.version.split()[0])"
done
echo "== init done: UI http://localhost:${AIRFLOW_PORT:-8090} (admin / see above), model server http://localhost:${EKSML_MODEL_PORT:-8081} once deployed"
