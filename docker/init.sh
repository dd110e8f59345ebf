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
echo "== pools, variables, connections from include/airflow_settings.yaml"
python -m eksml.airflow_settings /opt/airflow/include/airflow_settings.yaml
echo "== connection eksml_airflow_api (run notes through the REST API)"
password="$(python -c 'import json; print(json.load(open("/opt/airflow/auth/simple_auth_manager_passwords.json.generated"))["admin"])')"
airflow connections delete eksml_airflow_api >/dev/null 2>&1 || true
airflow connections add eksml_airflow_api --conn-type http --conn-host http://airflow-apiserver:8080 \
  --conn-login admin --conn-password "$password" >/dev/null
echo "== data store"
python /opt/eksml/init_store.py
echo "== image virtualenvs"
for venv in /opt/airflow/.venvs/*/; do
  "$venv/bin/python" -c "import sys; print('$(basename "$venv")', sys.version.split()[0])"
done
echo "== init done: UI http://localhost:${AIRFLOW_PORT:-8090} (admin / see above), model server http://localhost:${EKSML_MODEL_PORT:-8081} once deployed"
