#!/usr/bin/env bash
# Debian packages of the local real node and of the image builds (no Docker engine, no registry):
# containerd + runc (container runtime), CNI plugins (bridge, host-local, portmap, loopback),
# iptables and conntrack (kube-proxy), mmdebstrap (the local Debian base image), buildah
# (Dockerfile builds with --pull=never, OCI archives for containerd), gcc + libc6-dev (the pause
# container, a static build of Kubernetes' pause.c). Idempotent: a second call only checks.
set -euo pipefail
packages=(containerd runc containernetworking-plugins iptables conntrack mmdebstrap buildah gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "k8s-node: Debian packages present"
  exit 0
fi
sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
echo "k8s-node: installing ${missing[*]}"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package enables containerd as a system service; the node runs its own instance.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q containerd 2>/dev/null; then
  $sudo_cmd systemctl disable --now containerd >/dev/null 2>&1 || true
fi
