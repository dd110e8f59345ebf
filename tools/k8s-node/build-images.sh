#!/usr/bin/env bash
# Build the project's container images from their own Dockerfiles with buildah (no Docker
# engine, no registry: --pull=never), FROM the local Debian base (build-base.sh) through each
# Dockerfile's BASE_IMAGE build argument. Cached by content hash: the key covers the base, the
# Dockerfile, its .dockerignore and the build context files it may copy; a second call with
# nothing changed only checks. Prints "<name> <ref> <archive>" per image (the archive is an OCI
# archive containerd imports), after the base and pause images. (The key covers what goes into
# an image, not this script: a change here that alters images must change how they are built.)
# Usage: build-images.sh [image ...]   (default: every folder under images/ with a Dockerfile)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${EKSML_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eksml/images}"
# shellcheck source=tools/k8s-node/lib.sh
. "$here/lib.sh"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build at a time on this machine (two test sessions may ask at once)

bases="$(bash "$here/build-base.sh")"
echo "$bases"
base_ref="$(echo "$bases" | awk '$1 == "eksml-base" {print $2}')"

images=("$@")
if [ ${#images[@]} -eq 0 ]; then
  for dockerfile in "$root"/images/*/Dockerfile; do
    images+=("$(basename "$(dirname "$dockerfile")")")
  done
fi

build_image() {  # $1 archive, $2 ref; $dockerfile, $context, $ignore set by the caller
  # --network host: RUN steps reach PyPI and Debian through the host's own network; buildah's
  # default would create a bridge (cni-podman0), iptables chains and turn on IP forwarding.
  local args=(--pull=never --isolation=oci --network=host --layers=false --quiet -f "$dockerfile" -t "$2"
    --build-arg "BASE_IMAGE=$base_ref" "${extra_args[@]}")
  [ -f "$ignore" ] && args+=(--ignorefile "$ignore")
  nice -n 10 buildah bud "${args[@]}" "$context" >/dev/null
}

for name in "${images[@]}"; do
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
    cat "$dockerfile"
    [ -f "$ignore" ] && cat "$ignore"
    (cd "$context" && find "$name" common -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16)"
  cached_image "$name" "$key" build_image
done
