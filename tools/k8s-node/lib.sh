# Shared by build-base.sh and build-images.sh (sourced; needs $cache).

# cached_image NAME KEY BUILD_FN: make sure localhost/NAME:KEY exists in buildah's storage and as
# the OCI archive $cache/NAME-KEY.tar; BUILD_FN ARCHIVE REF builds the image only when neither is
# there. Prints "NAME REF ARCHIVE".
cached_image() {
  local name="$1" key="$2" build="$3"
  local ref="localhost/$name:$key" archive="$cache/$name-$key.tar"
  if [ -f "$archive" ] && ! buildah inspect --type image "$ref" >/dev/null 2>&1; then
    buildah pull --quiet "oci-archive:$archive" >/dev/null
  fi
  if [ ! -f "$archive" ]; then
    local t0; t0=$(date +%s)
    make_room "$name" "$key"
    echo "images: building $ref" >&2
    buildah inspect --type image "$ref" >/dev/null 2>&1 || "$build" "$archive" "$ref"
    # Uncompressed layers: gzip of multi-GB layers costs minutes here, and containerd imports either.
    buildah push --quiet --disable-compression "$ref" "oci-archive:$archive.part:$ref" >/dev/null
    mv "$archive.part" "$archive"
    echo "images: $ref built in $(( $(date +%s) - t0 )) s" >&2
    prune_superseded "$name" "$key"
  fi
  echo "$name $ref $archive"
}

# prune_superseded NAME KEY: the other keys' tags of localhost/NAME and their archives go (the
# Airflow image leaves ~8 GB per key; the disk filled up). Untagged images stay: buildah's layer
# cache (the eksctl stage's compile) lives in them.
prune_superseded() {
  local name="$1" key="$2" old tag
  for old in "$cache/$name"-*.tar; do
    # Only this name's archives: NAME-<16 hex digits>.tar, never another image's "NAME-..." prefix.
    if [[ "$(basename "$old")" =~ ^"$name"-[0-9a-f]{16}\.tar$ ]] && [ "$old" != "$cache/$name-$key.tar" ]; then
      rm -f "$old"
    fi
  done
  for tag in $(buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep -x "localhost/$name:[0-9a-f]\{16\}"); do
    [ "$tag" = "localhost/$name:$key" ] || buildah rmi "$tag" >/dev/null 2>&1 || true
  done
}

# free_gb: the free gigabytes of the emptier of buildah's storage and $cache (999 if unknown).
free_gb() {
  local store
  store="$(buildah info --format '{{.store.GraphRoot}}' 2>/dev/null)" || store=
  [ -d "$store" ] || store=/
  df -P --block-size=1G "$store" "$cache" 2>/dev/null | awk 'NR > 1 {print $4}' | sort -n | head -n 1 | grep . || echo 999
}

# make_room NAME KEY: before a build of NAME:KEY. The superseded keys of NAME go first, always
# (their tags and archives: this build replaces them when it ends anyway, and an Airflow image
# build failed with "no space left on device" beside the old key's 6 GB image and 2 GB archive).
# Then, while less than $EKSML_BUILD_MIN_FREE_GB is free (default $room_gb, which a caller sets for
# a large image, else 25), the working containers that failed or interrupted builds left behind
# (when no build runs) and the untagged images (buildah's layer cache: the next builds take longer).
# The Airflow image needs about 35 GB at its peak here: its virtualenvs stage (6 GB), their copy
# into the final stage, the commit of that layer, the image and its archive.
make_room() {
  local name="$1" key="$2" min="${EKSML_BUILD_MIN_FREE_GB:-${room_gb:-25}}" free
  prune_superseded "$name" "$key"
  free="$(free_gb)"
  [ "$free" -lt "$min" ] || return 0
  echo "images: $free GB free, less than the $min $name:$key needs" >&2
  if ! pgrep -f 'buildah (bud|build) ' >/dev/null; then
    echo "images: removing the working containers of earlier builds" >&2
    buildah rm --all >/dev/null 2>&1 || true
    free="$(free_gb)"
  fi
  if [ "$free" -lt "$min" ]; then
    echo "images: $free GB free: removing untagged images (buildah's layer cache)" >&2
    buildah rmi --prune >/dev/null 2>&1 || true
    free="$(free_gb)"
  fi
  echo "images: $free GB free" >&2
}

# build_image ARCHIVE REF: `buildah bud` of $dockerfile in $context FROM $base_ref (BASE_IMAGE),
# with $ignore (if present), the build arguments in the array $extra_args and $layers (true:
# buildah's layer cache). A cached_image build function.
build_image() {
  # --network host: RUN steps reach PyPI and Debian through the host's own network; buildah's
  # default would create a bridge (cni-podman0), iptables chains and turn on IP forwarding.
  # --format docker: Docker's image format, where a Dockerfile's SHELL applies to its RUN steps
  # (buildah's OCI format ignores SHELL and runs them with /bin/sh -c: no bash, no pipefail).
  local args=(--pull=never --isolation=oci --network=host --format=docker --layers="$layers" --quiet -f "$dockerfile"
    -t "$2" --build-arg "BASE_IMAGE=$base_ref" "${extra_args[@]}")
  [ -f "$ignore" ] && args+=(--ignorefile "$ignore")
  nice -n 10 buildah bud "${args[@]}" "$context" >/dev/null
}
