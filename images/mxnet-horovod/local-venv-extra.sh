#!/usr/bin/env bash
# Build Horovod 0.28.1 from source into the local-profile virtualenv given as $1.
# Horovod has no wheels: its MXNet extension compiles against the MXNet already installed in the
# venv (hence --no-build-isolation, with MXNet, cmake and setuptools pinned in requirements.txt),
# with Gloo as the only controller so `horovodrun --gloo` works without an MPI installation.
# Idempotent: a venv whose horovod.mxnet already imports with Gloo is left alone.
set -euo pipefail
venv="${1:?usage: local-venv-extra.sh <venv-path>}"
py="$venv/bin/python"
[ -x "$py" ] || { echo "local-venv-extra.sh: no python in $venv" >&2; exit 2; }

# horovod.mxnet imports only when its compiled MXNet extension loads.
check='import horovod.mxnet as hvd
assert hvd.gloo_built(), "horovod was built without Gloo"
print("horovod", __import__("horovod").__version__, "with MXNet and Gloo")'

if "$py" -c "$check" 2>/dev/null; then
  exit 0
fi

echo "horovod: building 0.28.1 from source (MXNet + Gloo), about 3 minutes on 2 cores"
export PATH="$venv/bin:$PATH"   # the pinned cmake of the venv
export HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
       HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1
# Its runtime dependencies are pinned in requirements.txt, so nothing unpinned comes in.
uv pip install --python "$py" --no-build-isolation --no-deps horovod==0.28.1

"$py" -c "$check" || { echo "horovod: build finished but horovod.mxnet does not work" >&2; exit 1; }
"$venv/bin/horovodrun" --check-build
