#!/usr/bin/env bash
# Build Horovod 0.28.1 from source into the local-profile virtualenv given as $1.
# Horovod has no wheels: its MXNet extension compiles against the MXNet already installed in the
# venv (hence --no-build-isolation and MXNet/cmake/setuptools pinned in requirements.txt), with
# Gloo as the only controller so `horovodrun --gloo` works without an MPI installation.
# Idempotent: a venv where horovod.mxnet already imports is left alone.
set -euo pipefail
venv="${1:?usage: local-venv-extra.sh <venv-path>}"
py="$venv/bin/python"
[ -x "$py" ] || { echo "local-venv-extra.sh: no python in $venv" >&2; exit 2; }

if "$py" -c "import horovod.mxnet" >/dev/null 2>&1; then
  echo "horovod: already built in $venv"
  exit 0
fi

echo "horovod: building 0.28.1 from source (MXNet + Gloo), a few minutes"
export PATH="$venv/bin:$PATH"   # the pinned cmake from the venv
export HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
       HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1
# Runtime dependencies are already pinned by requirements.txt, so nothing unpinned comes in.
uv pip install --python "$py" --no-build-isolation --no-deps horovod==0.28.1

# Fail loudly when the build "succeeded" without the pieces we need.
"$py" - <<'PY'
import horovod.mxnet as hvd
from horovod.common.util import gloo_built, mxnet_built
if not (mxnet_built() and gloo_built()):
    raise SystemExit(f"horovod built without MXNet or Gloo: mxnet={mxnet_built()} gloo={gloo_built()}")
print("horovod: built with MXNet and Gloo")
PY
