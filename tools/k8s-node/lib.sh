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
    echo "images: building $ref" >&2
    buildah inspect --type image "$ref" >/dev/null 2>&1 || "$build" "$archive" "$ref"
    # Uncompressed layers: gzip of multi-GB layers costs minutes here, and containerd imports either.
    buildah push --quiet --disable-compression "$ref" "oci-archive:$archive.part:$ref" >/dev/null
    mv "$archive.part" "$archive"
    echo "images: $ref built in $(( $(date +%s) - t0 )) s" >&2
  fi
  echo "$name $ref $archive"
}
