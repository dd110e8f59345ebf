#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine for the local profile:
#   the Fashion-MNIST Debian package, uv, the Airflow virtualenv (.venv) and one virtualenv
#   per image (.venvs/<image>), and with --k8s-testenv the test control plane (real Kubernetes
#   binaries built from pinned sources, tools/k8s-testenv) and, as root, a real node's packages,
#   its cluster DNS and the images, the Docker stack's Airflow image too (tools/k8s-node; not
#   with --no-airflow-image). A second call only checks, so it returns in seconds.
#   With --dev (make test, make lint) also the test tools of requirements-dev.txt in .venv, and
#   with --browser Chromium and its driver, which only the browser tests use: `make run` gets neither.
#   One line per step; the package installers' own output goes to .local/setup.log.
# Usage: scripts/setup.sh [--dev] [--k8s-testenv [--no-airflow-image]] [--browser] [image ...]   (default: every image under images/)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p .local
setup_log="$root/.local/setup.log"
# quietly "what" command...: one line; the command's output goes to the log, its tail on failure.
quietly() {
  local what="$1"; shift
  echo "$what (output: .local/setup.log)"
  echo "== $what" >>"$setup_log"
  if ! "$@" >>"$setup_log" 2>&1; then
    echo "failed: $what; last lines of .local/setup.log:" >&2
    tail -n 20 "$setup_log" >&2
    return 1
  fi
}
sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
apt_install() { $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }

k8s_testenv=0
airflow_image=1
browser=0
dev=0
images=()
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --k8s-testenv) k8s_testenv=1 ;;
    # make test builds the Docker stack's Airflow image itself, beside the k8s and node tiers
    --no-airflow-image) airflow_image=0 ;;
    --browser) browser=1 ;;
    *) images+=("$arg") ;;
  esac
done

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  install_dataset() { $sudo_cmd apt-get update -q && apt_install dataset-fashion-mnist; }
  quietly "installing Debian package dataset-fashion-mnist" install_dataset
fi

if [ "$browser" = 1 ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  quietly "installing chromium and chromium-driver (browser tests of the Airflow UI)" apt_install chromium chromium-driver \
    || echo "chromium unavailable: the UI tests will be skipped"
fi

if ! command -v uv >/dev/null 2>&1; then
  quietly "installing uv" python3 -m pip install -q uv
fi

# "bytecode": see images/build-local-venv.sh (a .venv built before that is rebuilt once). Each
# stamp names the requirements its packages were installed from: the main job's, then (--dev)
# the test tools on top, which a change of the main requirements makes stale.
want="$( { echo bytecode; cat requirements.txt; } | sha256sum | cut -d' ' -f1)"
want_dev="$( { echo "$want"; cat requirements-dev.txt; } | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  t0=$(date +%s)
  echo "building .venv (Airflow; a minute or two on a fresh machine)"
  uv venv -q --allow-existing --python 3.11 .venv
  uv pip install -q --python .venv/bin/python -r requirements.txt
  .venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
  rm -f .venv/.requirements-dev.sha256
  echo "$want" > .venv/.requirements.sha256
  echo ".venv: ready in $(( $(date +%s) - t0 )) s"
else
  echo ".venv (Airflow): up to date"
fi
if [ "$dev" = 1 ]; then
  if [ "$(cat .venv/.requirements-dev.sha256 2>/dev/null)" != "$want_dev" ]; then
    quietly "installing the test tools into .venv (requirements-dev.txt)" \
      uv pip install -q --python .venv/bin/python -r requirements.txt -r requirements-dev.txt
    echo "$want_dev" > .venv/.requirements-dev.sha256
  else
    echo ".venv test tools: up to date"
  fi
fi

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
  # Two chains side by side: the Go builds (control plane, CoreDNS) keep the CPUs busy, while the
  # image builds (Debian base, the images, the Docker stack's Airflow image) wait on PyPI and
  # Debian for much of theirs. Each caches by content hash: a second call only checks.
  node=0
  if command -v go >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }; then node=1; fi
  images_pid=""
  if [ "$node" = 1 ]; then
    # The real node's Debian packages (buildah among them) come first: the image chain needs them.
    bash tools/k8s-node/install-packages.sh
    if [ "$(id -u)" = 0 ]; then
      (bash tools/k8s-node/build-images.sh >/dev/null \
        && { [ "$airflow_image" = 0 ] || bash tools/k8s-node/build-images.sh airflow >/dev/null; }) &
      images_pid=$!
    fi
  fi
  # Builds once per pin change (the last line printed is where the binaries are). Without a
  # suitable Go it says what is missing, and the tests marked k8s skip with that reason.
  rc=0
  bash tools/k8s-testenv/build.sh || rc=$?
  [ "$node" = 1 ] && [ "$rc" = 0 ] && { bash tools/k8s-node/build-coredns.sh >/dev/null || rc=$?; }
  images_rc=0
  [ -z "$images_pid" ] || wait "$images_pid" || images_rc=$?
  if [ "$rc" = 3 ]; then
    echo "k8s test control plane not available: the tests marked k8s will be skipped"
  elif [ "$rc" != 0 ]; then
    echo "k8s test control plane or cluster DNS: build failed (exit $rc)" >&2
    exit "$rc"
  fi
  if [ "$images_rc" != 0 ]; then
    echo "images (tools/k8s-node/build-images.sh): build failed (exit $images_rc)" >&2
    exit "$images_rc"
  fi
fi
