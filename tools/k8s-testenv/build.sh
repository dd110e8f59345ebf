#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok, the Kubeflow MPI operator) and a real node's kubelet and kube-proxy (same
# k8s.io/kubernetes module) from the module versions pinned in this directory.
#
# The binaries go to $EKSML_K8S_TESTENV_CACHE/<hash>/bin (default cache:
# ${XDG_CACHE_HOME:-$HOME/.cache}/eksml/k8s-testenv), where <hash> covers every file in this
# directory (go.mod, go.sum, sources, this script): while the pins are unchanged a second call
# only checks, and every checkout on the machine shares one build. A build goes to a temporary
# directory and is renamed into place only when complete, so a failed build never replaces a
# good one. Go's own caches (GOMODCACHE, GOCACHE) are used as configured.
#
# Usage: build.sh            build if needed; the last line printed is the bin directory
#        build.sh --locate   build nothing; print the bin directory, or why there is none (exit 3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${EKSML_K8S_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eksml/k8s-testenv}"
#: Modules from go.mod files (see the `go` lines there); older Go switches toolchain itself.
go_min_minor=21
go_need="Go >= 1.$go_min_minor (the modules here ask for go 1.26; Go >= 1.21 downloads that toolchain from the module proxy by itself, unless GOTOOLCHAIN=local)"

key="$(cd "$here" && find . -type f ! -name '*.md' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
dir="$cache/$key"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kwok mpi-operator)

if [ -f "$dir/complete" ]; then
  echo "$dir/bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "k8s-testenv: no 'go' on PATH: cannot build the test control plane; need $go_need, e.g. from https://go.dev/dl/" >&2
  exit 3
fi
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if ! [ "$go_minor" -ge "$go_min_minor" ] 2>/dev/null; then
  echo "k8s-testenv: $(go env GOVERSION) is too old to build the test control plane; need $go_need" >&2
  exit 3
fi
if [ "${1:-}" = "--locate" ]; then
  echo "k8s-testenv: control plane not built for these pins ($dir): run scripts/setup.sh --k8s-testenv (or $0)" >&2
  exit 3
fi

start=$(date +%s)
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.build-$key-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/share"
echo "k8s-testenv: building into $dir (once per pin change; from an empty Go cache this takes a long time)"

# kube-apiserver & co. report the version they were built from (kubectl, clients and the
# discovery document read it); k8s.io/kubernetes' own build sets it the same way.
kube_version="$(cd "$here/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="$(echo "$kube_version" | cut -d. -f2)"
vpkg=k8s.io/component-base/version
kube_ldflags="-s -w -X $vpkg.gitVersion=$kube_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"

(cd "$here/kube" && nice -n 5 go build -trimpath -ldflags "$kube_ldflags" -o "$tmp/bin/" \
  ./cmd/etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
(cd "$here/kwok" && nice -n 5 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/" sigs.k8s.io/kwok/cmd/kwok)
(cd "$here/mpi-operator" && nice -n 5 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/" ./cmd/mpi-operator)

# kwok's own node stages (initialise, heartbeat with lease) from the pinned module, unchanged.
kwok_dir="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
cp "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml" \
  "$kwok_dir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" "$tmp/share/"

# The MPI operator's published manifest (CRD, RBAC) at the release the binary is built from.
mpi_dir="$(cd "$here/mpi-operator" && go list -m -f '{{.Dir}}' github.com/kubeflow/mpi-operator)"
cp "$mpi_dir/deploy/v2beta1/mpi-operator.yaml" "$tmp/share/"

for b in "${binaries[@]}"; do
  [ -x "$tmp/bin/$b" ] || { echo "k8s-testenv: $b was not built" >&2; exit 1; }
done
{
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s with $(go env GOVERSION)"
  (cd "$here/kube" && go list -m -f '{{.Path}} {{.Version}}' k8s.io/kubernetes go.etcd.io/etcd/server/v3)
  (cd "$here/kwok" && go list -m -f '{{.Path}} {{.Version}}' sigs.k8s.io/kwok)
  (cd "$here/mpi-operator" && go list -m -f '{{.Path}} {{.Version}}' github.com/kubeflow/mpi-operator)
} > "$tmp/versions.txt"
touch "$tmp/complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
sed 's/^/k8s-testenv: /' "$dir/versions.txt"
echo "$dir/bin"
