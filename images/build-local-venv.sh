#!/usr/bin/env bash
# Build the local-profile virtualenv of one image: .venvs/<image> from images/<image>/requirements.txt.
# The local profile runs each container workload as a process in this virtualenv, with the same
# entrypoint, arguments and environment the pod would get. Idempotent: a venv whose requirements
# file has not changed since the last build is left alone.
set -euo pipefail
image="${1:?usage: build-local-venv.sh <image-name>}"
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/images/$image/requirements.txt"
venv="$root/.venvs/$image"
stamp="$venv/.requirements.sha256"
[ -f "$req" ] || { echo "no such image: $req" >&2; exit 2; }
extra="$root/images/$image/local-venv-extra.sh"
# "bytecode": venvs built before their modules were compiled at build time get rebuilt once.
want="$( { echo bytecode; cat "$req"; if [ -f "$extra" ]; then cat "$extra"; fi; } | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "venv $image: up to date"
  exit 0
fi
t0=$(date +%s)
echo "venv $image: building in $venv (minutes on a fresh machine; uv's cache makes it seconds later)"
uv venv -q --allow-existing --python 3.11 "$venv"
uv pip install -q --python "$venv/bin/python" -r "$req"
# uv writes no .pyc files (pip does), and with PYTHONDONTWRITEBYTECODE set every process would
# compile each module it imports from source again: 1 s of every Airflow start here. Exit status 1
# only means some file did not compile (test data of a few packages); Python skips those too.
"$venv/bin/python" -m compileall -q -j 0 "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
echo "venv $image: packages installed and compiled ($(( $(date +%s) - t0 )) s)"
if [ -f "$extra" ]; then
  # Its compiler output (Horovod builds from source) goes to the set-up log, its tail on failure.
  log="$root/.local/setup.log"; mkdir -p "$root/.local"
  echo "venv $image: extra build step images/$image/local-venv-extra.sh (output: .local/setup.log)"
  bash "$extra" "$venv" >>"$log" 2>&1 || { echo "failed: images/$image/local-venv-extra.sh; last lines:" >&2; tail -n 20 "$log" >&2; exit 1; }
fi
echo "$want" > "$stamp"
echo "venv $image: ready in $(( $(date +%s) - t0 )) s"
