#!/usr/bin/env bash
# `make run-node`: the training and deployment DAGs in the kubernetes profile (a cluster reached
# through an Airflow kubernetes connection, an S3-compatible store) on the built-in real node:
# set up (the Debian packages of the node, the control plane binaries, the images, cached), start
# the cluster and S3 on this host, run both DAGs, stop everything (scripts/run_node.py).
# Needs root (containerd, kubelet, CNI, iptables); what the node changes on the host and undoes is
# listed in the README ("A real node"). One real node per host: a second run waits for the first.
# Usage: scripts/run_node.sh ['{"epochs": 2}']
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
conf="${1:-}"; [ -n "$conf" ] || conf="{}"
[ "$(id -u)" = 0 ] || { echo "run-node needs root (containerd, kubelet, CNI bridge, iptables): sudo make run-node" >&2; exit 2; }
start=$(date +%s)
echo "== set-up (Debian packages, .venv, control plane binaries, images)"
bash tools/k8s-node/install-packages.sh
bash scripts/setup.sh --dev --k8s-testenv

source scripts/airflow_env.sh
airflow_env "$root/.local/airflow-node"
if [ ! -f "$AIRFLOW_HOME/airflow.db" ]; then
  echo "== Airflow metadata database ($AIRFLOW_HOME), pools, variables"
  .venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
  .venv/bin/python -m eksml.airflow_objects
fi
.venv/bin/python scripts/run_node.py --conf "$conf" --log-dir "$AIRFLOW_HOME"
echo "== done in $(( $(date +%s) - start )) s"
