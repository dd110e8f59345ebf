#!/usr/bin/env bash
# `make test`: lint, then every tier that can run here. The builds only the k8s and node tiers
# need (the control plane and CoreDNS from Go sources, the images, the Docker stack's Airflow
# image: most of a fresh machine's set-up) run in the background at the lowest CPU and I/O
# priority while the other tiers run, which leave a core idle much of the time (waiting on
# Airflow's scheduler, servers and subprocesses); the k8s and node tiers follow. A failed build
# fails the command after the first tiers have run, with the build log's tail.
# Usage: scripts/test.sh [pytest args...]   (after scripts/setup.sh --dev --browser)
set -euo pipefail
cd "$(dirname "$0")/.."
# --durations: where the time goes, the slowest tests of each phase.
pytest=(.venv/bin/python -m pytest --durations=25)
.venv/bin/ruff format --check --diff .
.venv/bin/ruff check .
PYTHONPATH=plugins .venv/bin/lint-imports

mkdir -p .local
builds_log=.local/test-builds.log
t0=$(date +%s)
echo "building the k8s and node tiers' prerequisites in the background (output: $builds_log)"
# A session of its own, so an interrupted run stops the whole build with it.
setsid ionice -c 3 nice -n 19 bash scripts/setup.sh --k8s-testenv >"$builds_log" 2>&1 &
builds=$!
trap 'kill -- -"$builds" 2>/dev/null || true; exit 130' INT TERM

rc=0
"${pytest[@]}" -m "not cluster and not k8s and not node" "$@" || rc=$?
echo "waiting for the background builds ($(( $(date +%s) - t0 )) s since they started)"
if ! wait "$builds"; then
  echo "background builds failed; last lines of $builds_log:" >&2
  tail -n 30 "$builds_log" >&2
  exit 1
fi
echo "background builds done after $(( $(date +%s) - t0 )) s"
"${pytest[@]}" -m "(k8s or node) and not cluster" "$@" || rc=$?
exit "$rc"
