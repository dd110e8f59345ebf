#!/usr/bin/env bash
# One-shot initialisation of the Docker stack (service airflow-init), idempotent:
# Fernet key and admin password (generated at the first start, kept afterwards), metadata
# database schema, the project's pools/variables/connections (include/airflow_settings.yaml),
# the connection the training DAG writes run notes with, and the store's bucket.
set -euo pipefail
echo "== secrets (first start only)"
python /opt/eksml/init_secrets.py /opt/airflow/auth
echo "== airflow db migrate"
airflow db migrate
echo "== pools, variables, connections (include/airflow_settings.yaml; eksml_airflow_api for run notes)"
# Through Airflow's Python API: the CLI would record its command line in the metadata database.
python -m eksml.airflow_settings /opt/airflow/include/airflow_settings.yaml \
  --airflow-api-host http://airflow-apiserver:8080 \
  --admin-password-file /opt/airflow/auth/simple_auth_manager_passwords.json.generated
echo "== data store"
python /opt/eksml/init_store.py
echo "== image virtualenvs"
for venv in /opt/airflow/.venvs/*/; do
  "$venv/bin/python" -c "import sys; print('$(basename "$venv")', sys.version.split()[0])"
done
echo "== init done: UI http://localhost:${AIRFLOW_PORT:-8090} (admin / see above), model server http://localhost:${EKSML_MODEL_PORT:-8081} once deployed"
