#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine for the local profile:
#   the Fashion-MNIST Debian package, uv, the Airflow virtualenv (.venv) and one virtualenv
#   per image (.venvs/<image>), and with --k8s-testenv the test control plane (real Kubernetes
#   binaries built from pinned sources, tools/k8s-testenv) and, as root, a real node's packages
#   and images (tools/k8s-node). A second call only checks, so it returns in seconds.
# Usage: scripts/setup.sh [--k8s-testenv] [image ...]   (default: every image under images/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "installing Debian package dataset-fashion-mnist"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq dataset-fashion-mnist
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (browser tests of the Airflow UI)"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq chromium chromium-driver || echo "chromium unavailable: the UI tests will be skipped"
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv"
  python3 -m pip install -q uv
fi

# "bytecode": see images/build-local-venv.sh (a .venv built before that is rebuilt once).
want="$( { echo bytecode; cat requirements.txt requirements-dev.txt; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  t0=$(date +%s)
  echo "building .venv (Airflow and the test tools; a minute or two on a fresh machine)"
  uv venv -q --allow-existing --python 3.11 .venv
  uv pip install -q --python .venv/bin/python -r requirements.txt -r requirements-dev.txt
  .venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  echo "$want" > .venv/.requirements.sha256
  echo ".venv: ready in $(( $(date +%s) - t0 )) s"
else
  echo ".venv (Airflow): up to date"
fi

k8s_testenv=0
images=()
for arg in "$@"; do
  case "$arg" in
    --k8s-testenv) k8s_testenv=1 ;;
    *) images+=("$arg") ;;
  esac
done
if [ ${#images[@]} -eq 0 ]; then
  for dir in images/*/; do
    name="$(basename "$dir")"
    [ -f "images/$name/requirements.txt" ] && images+=("$name")
  done
fi
for image in "${images[@]}"; do
  bash images/build-local-venv.sh "$image"
done

if [ "$k8s_testenv" = 1 ]; then
  # Builds once per pin change (the last line printed is where the binaries are). Without a
  # suitable Go it says what is missing, and the tests marked k8s skip with that reason.
  rc=0
  bash tools/k8s-testenv/build.sh || rc=$?
  if [ "$rc" = 3 ]; then
    echo "k8s test control plane not available: the tests marked k8s will be skipped"
  elif [ "$rc" != 0 ]; then
    echo "k8s test control plane: build failed (exit $rc)" >&2
    exit "$rc"
  fi
  # The real node's Debian packages and the images it runs (tools/k8s-node; cached by content hash).
  if [ "$rc" = 0 ] && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then
    bash tools/k8s-node/install-packages.sh
    if [ "$(id -u)" = 0 ]; then bash tools/k8s-node/build-images.sh >/dev/null; fi
  fi
fi
