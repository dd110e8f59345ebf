#!/usr/bin/env bash
# `make test`: lint, then every tier that can run here. The builds only the k8s and node tiers
# need (the control plane and CoreDNS from Go sources, the images, the Docker stack's Airflow
# image: most of a fresh machine's set-up) run in the background while the other tiers run, which
# leave a core idle much of the time (waiting on Airflow's scheduler, servers and subprocesses);
# the k8s and node tiers follow the builds in the same background chain. With no arguments the
# unit and integration tiers run in a stream of their own beside the e2e tier. Each background
# stream's output is printed whole after the foreground's. A failed build fails the command after
# the first tiers have run, with the build log's tail.
# Usage: scripts/test.sh [pytest args...]   (after scripts/setup.sh --dev --browser)
set -euo pipefail
cd "$(dirname "$0")/.."
# --durations: where the time goes, the slowest tests of each phase.
pytest=(.venv/bin/python -m pytest --durations=25)
bash scripts/lint.sh

mkdir -p .local
builds_log=.local/test-builds.log
cluster_log=.local/test-k8s-node.log
t0=$(date +%s)
echo "building the k8s and node tiers' prerequisites in the background (output: $builds_log);"
echo "their tests start once the builds are done, beside the other tiers (output: $cluster_log)"
# The builds run at the lowest CPU and I/O priority, then the k8s and node tiers at the normal one:
# on a warm machine the builds take a minute and those tiers fill the cores that the first tiers
# leave idle while they wait on Airflow, servers and subprocesses. A session of its own, so an
# interrupted run stops the whole chain with it. Exit status 97: the builds failed.
# The Docker stack's Airflow image, the longest build (tens of minutes on a fresh machine), goes on
# beside the k8s and node tiers instead of before them: the one test that runs it comes last
# (tests/k8s/conftest.py) and waits for it on the image cache's lock.
setsid bash -c '
  ionice -c 3 nice -n 19 bash scripts/setup.sh --k8s-testenv --no-airflow-image >"$1" 2>&1 || exit 97
  echo "background builds done after $(( $(date +%s) - $2 )) s, the Airflow image goes on beside the tests"
  airflow=""
  if [ "$(id -u)" = 0 ] && command -v go >/dev/null 2>&1 && command -v buildah >/dev/null 2>&1; then
    ionice -c 3 nice -n 19 bash tools/k8s-node/build-images.sh airflow >>"$1" 2>&1 &
    airflow=$!
  fi
  shift 2
  rc=0
  "$@" || rc=$?
  if [ -n "$airflow" ] && ! wait "$airflow"; then exit 97; fi
  exit "$rc"
' chain "$builds_log" "$t0" "${pytest[@]}" -m "(k8s or node) and not cluster" "$@" >"$cluster_log" 2>&1 &
chain=$!
trap 'kill -- -"$chain" 2>/dev/null || true; exit 130' INT TERM

first=(-m "not cluster and not k8s and not node")
rc=0
if [ $# -eq 0 ]; then
  # The whole suite: the unit and integration tiers (CPU-bound, no Airflow services) run in a
  # third stream beside the e2e tier, which waits on Airflow much of the time. With arguments
  # (paths, -k) the first tiers stay one pytest run, so that the arguments reach all of them.
  side_log=.local/test-unit-integration.log
  echo "the unit and integration tiers run beside the end-to-end tier (output: $side_log)"
  setsid "${pytest[@]}" "${first[@]}" tests/unit tests/integration >"$side_log" 2>&1 &
  side=$!
  trap 'kill -- -"$chain" -"$side" 2>/dev/null || true; exit 130' INT TERM
  "${pytest[@]}" "${first[@]}" --ignore=tests/unit --ignore=tests/integration || rc=$?
  side_rc=0
  wait "$side" || side_rc=$?
  echo "the unit and integration tiers ($side_log):"
  cat "$side_log"
  [ "$side_rc" = 0 ] || rc=$side_rc
else
  "${pytest[@]}" "${first[@]}" "$@" || rc=$?
fi
echo "waiting for the k8s and node tiers ($(( $(date +%s) - t0 )) s since their builds started)"
chain_rc=0
wait "$chain" || chain_rc=$?
if [ "$chain_rc" = 97 ]; then
  echo "background builds failed; last lines of $builds_log:" >&2
  tail -n 30 "$builds_log" >&2
  if [ -s "$cluster_log" ]; then echo "the k8s and node tiers ($cluster_log):"; cat "$cluster_log"; fi
  exit 1
fi
echo "the k8s and node tiers ($cluster_log):"
cat "$cluster_log"
[ "$chain_rc" = 0 ] || rc=$chain_rc
exit "$rc"
