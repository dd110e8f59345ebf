#!/usr/bin/env bash
# Build the project's container images from their own Dockerfiles with buildah (no Docker
# engine, no registry: --pull=never), FROM the local Debian base (build-base.sh) through each
# Dockerfile's BASE_IMAGE build argument. Cached by content hash: the key covers the base, the
# Dockerfile, its .dockerignore and the build context files it may copy; a second call with
# nothing changed only checks. Prints "<name> <ref> <archive>" per image (the archive is an OCI
# archive containerd imports), after the base and pause images. (The key covers what goes into
# an image and lib.sh's build_image, not the rest of this script.)
# The Airflow image of docker-compose.yaml (docker/Dockerfile, context: the repository root) is
# the image "airflow", built only when named: FROM two local bases standing in for its public
# ones (eksml-airflow-base: the local base with the official image's user, paths and pip
# settings; eksml-go: the local base with this host's Go toolchain), with buildah's layer cache,
# so a change to dags/ or plugins/ rebuilds only the last layers.
# Usage: build-images.sh [image ...]   (default: every folder under images/ with a Dockerfile)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${EKSML_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eksml/images}"
# shellcheck source=tools/k8s-node/lib.sh
. "$here/lib.sh"
mkdir -p "$cache"
# One build of each image at a time on this machine (two test sessions may ask at once): the
# bases under one lock, then each image under its own, so a long build (the Airflow image's)
# never holds up another image.
exec 9>"$cache/.lock"
flock 9
bases="$(bash "$here/build-base.sh")"
flock -u 9
echo "$bases"
base_ref="$(echo "$bases" | awk '$1 == "eksml-base" {print $2}')"
layers=false

images=("$@")
if [ ${#images[@]} -eq 0 ]; then
  for dockerfile in "$root"/images/*/Dockerfile; do
    images+=("$(basename "$(dirname "$dockerfile")")")
  done
fi

# The local stand-ins for docker/Dockerfile's public bases (apache/airflow, golang).
build_airflow_base() {
  # What docker/Dockerfile relies on in apache/airflow: user airflow (uid 50000, group 0) whose
  # pip installs go to ~/.local (PIP_USER), AIRFLOW_HOME=/opt/airflow owned by it, that as WORKDIR.
  local c; c="$(buildah from --pull-never "$base_ref")"
  buildah run --isolation oci --network none "$c" -- sh -c 'useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow \
      --shell /bin/bash airflow && mkdir -p /opt/airflow && chown airflow:0 /opt/airflow'
  # SSL_CERT_FILE: uv (the venvs stage) trusts its own root list, not the system store, unless told
  # so; the system store holds the host's extra CAs (build-base.sh), as pip's already does.
  buildah config --user airflow --workingdir /opt/airflow --env AIRFLOW_HOME=/opt/airflow --env AIRFLOW_UID=50000 \
    --env PIP_USER=true --env PATH=/home/airflow/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$c"
  buildah commit --quiet --rm "$c" "$2" >/dev/null
}
go_root="$(go env GOROOT 2>/dev/null || true)"
build_go_base() {
  # The golang image's contract: a Go toolchain on PATH, GOTOOLCHAIN=local (never download one).
  local c; c="$(buildah from --pull-never "$base_ref")"
  buildah copy --quiet "$c" "$go_root" /usr/local/go >/dev/null
  buildah config --env GOTOOLCHAIN=local --env GOPATH=/go \
    --env PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  buildah commit --quiet --rm "$c" "$2" >/dev/null
}

for name in "${images[@]}"; do
  if [ "$name" = airflow ]; then
    [ -n "$go_root" ] || { echo "images: airflow needs a Go toolchain on PATH (eksctl stage)" >&2; exit 2; }
    flock 9  # the two bases, like eksml-base, under the shared lock
    airflow_base="$(cached_image eksml-airflow-base \
      "$( { echo "$base_ref"; declare -f build_airflow_base; } | sha256sum | cut -c1-16)" build_airflow_base)"
    go_base="$(cached_image eksml-go \
      "$( { echo "$base_ref"; "$go_root/bin/go" version; } | sha256sum | cut -c1-16)" build_go_base)"
    flock -u 9
    echo "$airflow_base"; echo "$go_base"
    dockerfile="$root/docker/Dockerfile"
    context="$root"
    ignore="$root/docker/Dockerfile.dockerignore"
    # --jobs: its three stages side by side where they do not depend on each other (eksctl's
    # compile, the virtualenvs, Airflow's pip install), as Docker's BuildKit builds them; buildah
    # builds one stage at a time by default.
    extra_args=(--build-arg "AIRFLOW_IMAGE=$(echo "$airflow_base" | cut -d' ' -f2)"
      --build-arg "GO_IMAGE=$(echo "$go_base" | cut -d' ' -f2)" --jobs 3)
    layers=true
    # What the context sends (docker/Dockerfile.dockerignore), as git tracks it.
    key="$( {
      echo "${extra_args[@]}"
      declare -f build_image
      cat "$dockerfile" "$ignore"
      (cd "$root" && git ls-files -z requirements.txt images dags plugins include docker/init.sh docker/init_store.py \
        docker/init_secrets.py docker/eksctl | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-16)"
    exec 8>"$cache/.lock-airflow"; flock 8
    room_gb=40 cached_image airflow "$key" build_image
    flock -u 8
    layers=false
    continue
  fi
  dockerfile="$root/images/$name/Dockerfile"
  [ -f "$dockerfile" ] || { echo "images: no such image: $dockerfile" >&2; exit 2; }
  context="$root/images"
  ignore="$dockerfile.dockerignore"
  extra_args=()
  # Per-image build arguments for the local base, one line each in build-args (optional).
  if [ -f "$root/images/$name/build-args.local" ]; then
    while read -r line; do
      case "$line" in ''|'#'*) ;; *) extra_args+=(--build-arg "$line") ;; esac
    done < "$root/images/$name/build-args.local"
  fi
  key="$( {
    echo "$base_ref" "${extra_args[@]}"
    declare -f build_image
    cat "$dockerfile"
    [ -f "$ignore" ] && cat "$ignore"
    (cd "$context" && find "$name" common -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16)"
  exec 8>"$cache/.lock-$name"; flock 8
  cached_image "$name" "$key" build_image
  flock -u 8
done
