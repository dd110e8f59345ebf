#!/usr/bin/env bash
# One-shot initialisation of the Docker stack (service airflow-init), idempotent:
# metadata database schema, the project's pools/variables/connections
# (include/airflow_settings.yaml), and the store's bucket on the S3 emulator.
set -euo pipefail
echo "== airflow db migrate"
airflow db migrate
echo "== pools, variables, connections from include/airflow_settings.yaml"
python -m eksml.airflow_settings /opt/airflow/include/airflow_settings.yaml
echo "== data store"
python /opt/eksml/init_store.py
echo "== image virtualenvs"
for venv in /opt/airflow/.venvs/*/; do
  "$venv/bin/python" -c "import sys; print('$(basename "$venv")', sys.version.split()[0])"
done
echo "== init done"
