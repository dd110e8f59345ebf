#!/usr/bin/env bash
# Renders the controllers' upstream Helm charts at their pinned versions into the vendored
# manifests under include/kubernetes/, with the per-cluster values left as ${NAME} placeholders
# (eksml.cluster.addons.substitute fills them when the add-ons step builds the objects), then
# prints the SHA-256 lines for the folder's addons.sha256. A maintainer's tool: it needs helm and
# the Go module proxy; nothing runs it at run time, and no cluster build fetches anything.
# Usage: tools/addon-charts/render.sh karpenter
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
helm="${HELM:-helm}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

case "${1:-}" in
  karpenter)
    version=1.15.2
    # The chart as tagged in the Go module github.com/aws/karpenter-provider-aws@v$version (the
    # release process sets the chart's version and image in charts/karpenter before packaging it;
    # hack/release/common.sh): the same here, except the image digest, which only the registry
    # knows (public.ecr.aws cannot be reached from where this was rendered): the image is pinned
    # by its release tag.
    proxy="${GOPROXY:-https://proxy.golang.org}"; proxy="${proxy%%,*}"
    curl -sSfL -o "$work/module.zip" "$proxy/github.com/aws/karpenter-provider-aws/@v/v$version.zip"
    (cd "$work" && unzip -q module.zip "github.com/aws/karpenter-provider-aws@v$version/charts/karpenter/*")
    chart="$work/github.com/aws/karpenter-provider-aws@v$version/charts/karpenter"
    sed -i "s/^version: .*/version: $version/; s/^appVersion: .*/appVersion: $version/" "$chart/Chart.yaml"
    out="$root/include/kubernetes/karpenter/karpenter-controller-v$version.yaml"
    # --kube-version: the chart picks API versions by it (policy/v1 PodDisruptionBudget); the
    # project's Kubernetes version (eksml.eks_versions.DEFAULT_KUBERNETES_VERSION).
    "$helm" template karpenter "$chart" --namespace kube-system --kube-version 1.35 \
      --set controller.image.tag="$version" --set controller.image.digest= \
      --set settings.clusterName='${CLUSTER_NAME}' \
      --set settings.interruptionQueue='${INTERRUPTION_QUEUE}' \
      --set 'serviceAccount.annotations.eks\.amazonaws\.com/role-arn=${KARPENTER_ROLE_ARN}' \
      --set 'controller.env[0].name=AWS_REGION' --set 'controller.env[0].value=${AWS_REGION}' \
      --set 'nodeSelector.role=${NODE_ROLE}' \
      >"$out"
    (cd "$(dirname "$out")" && sha256sum "$(basename "$out")")
    ;;
  *)
    echo "usage: $0 karpenter" >&2
    exit 2
    ;;
esac
