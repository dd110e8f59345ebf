#!/usr/bin/env bash
# The local base images of the real-node test tier, built from Debian packages (no registry):
#   eksml-base   Debian 12 minbase with its Python 3.11, pip and the host's extra CA certificates
#                (a TLS-intercepting proxy's CA must be trusted for pip inside builds), the base
#                every Dockerfile is built FROM in tests (BASE_IMAGE build argument);
#   eksml-pause  the pod sandbox ("pause") container: Kubernetes' pause.c from the pinned
#                k8s.io/kubernetes module, compiled static.
# Each is cached by content hash: an OCI archive under $cache/<name>-<hash>.tar (what containerd
# imports) and the image localhost/<name>:<hash> in buildah's storage (what Dockerfiles build
# FROM). Prints "<name> <ref> <archive>" per image. A build goes to a temporary file first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${EKSML_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eksml/images}"
mkdir -p "$cache"
# shellcheck source=tools/k8s-node/lib.sh
. "$here/lib.sh"

base_packages="python3,python3-pip,python-is-python3,ca-certificates"
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()

base_key="$( { cat "$0"; echo "$base_packages"; for ca in "${extra_cas[@]}"; do cat "$ca"; done; } | sha256sum | cut -c1-16)"
build_base() {  # $1: output archive, $2: image reference
  local work; work="$(mktemp -d "$cache/.base-XXXXXX")"
  local hooks=()
  for ca in "${extra_cas[@]}"; do
    hooks+=(--customize-hook="copy-in $ca /usr/local/share/ca-certificates/")
  done
  # The image's Python is used as the public python image's is: pip installs into it (Debian
  # marks it externally managed, which only makes sense beside apt-managed Python packages).
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$base_packages" \
    "${hooks[@]}" \
    --customize-hook='chroot "$1" update-ca-certificates' \
    --customize-hook='rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED' \
    bookworm "$work/rootfs.tar" /etc/apt/sources.list.d/debian.sources
  local c; c="$(buildah from scratch)"
  buildah add --quiet "$c" "$work/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$c"
  buildah commit --quiet --rm "$c" "$2" >/dev/null
  rm -rf "$work"
}

# `go mod download` first: `go list -m` names no folder for a module not yet in the module cache,
# and this runs beside the control plane's build (scripts/setup.sh), which may not have fetched it.
pause_src="$(cd "$here/../k8s-testenv/kube" && go mod download k8s.io/kubernetes \
  && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
pause_key="$( { cat "$0" "$pause_src"; } | sha256sum | cut -c1-16)"
build_pause() {
  local work; work="$(mktemp -d "$cache/.pause-XXXXXX")"
  gcc -Os -static -Wall -o "$work/pause" "$pause_src"
  local c; c="$(buildah from scratch)"
  buildah copy --quiet "$c" "$work/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  buildah commit --quiet --rm "$c" "$2" >/dev/null
  rm -rf "$work"
}

cached_image eksml-base "$base_key" build_base
cached_image eksml-pause "$pause_key" build_pause
