#!/usr/bin/env bash
# Build CoreDNS (the cluster DNS of the test node) from the module pinned in coredns/, with the
# plugins coredns/main.go lists. Cached by content hash like tools/k8s-testenv: the binary goes
# to $cache/<hash>/coredns, where <hash> covers coredns/ and this script; a second call only
# checks. A build goes to a temporary folder and is renamed into place when complete.
# Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${EKSML_COREDNS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eksml/coredns}"
key="$( (cd "$here" && find coredns build-coredns.sh -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
  | sha256sum | cut -c1-16)"
dir="$cache/$key"
if [ -x "$dir/coredns" ]; then
  echo "$dir/coredns"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "coredns: no 'go' on PATH (Go >= 1.21 builds it)" >&2; exit 3; }
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.build-$key-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)
echo "coredns: building into $dir" >&2
(cd "$here/coredns" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$tmp/coredns" .)
mv "$tmp" "$dir"
trap - EXIT
echo "coredns: built in $(( $(date +%s) - t0 )) s with $(go env GOVERSION)" >&2
echo "$dir/coredns"
