#!/usr/bin/env bash
# Renders the controllers' upstream Helm charts at their pinned versions into the vendored
# manifests under include/kubernetes/, with the per-cluster values left as ${NAME} placeholders
# (eksml.cluster.addons.substitute fills them when the add-ons step builds the objects), then
# prints the SHA-256 lines for the folder's addons.sha256. A maintainer's tool: it needs helm and
# the Go module proxy; nothing runs it at run time, and no cluster build fetches anything.
# Usage: tools/addon-charts/render.sh karpenter|aws-load-balancer-controller
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
  aws-load-balancer-controller)
    version=3.5.0
    # The chart as tagged in github.com/kubernetes-sigs/aws-load-balancer-controller at v$version
    # (commit 11eb202c97e4, "cut v$version release"; Chart.yaml already carries the version and
    # the image tag), from the Go module sigs.k8s.io/aws-load-balancer-controller/v3, or from a
    # clone of the repository given as ALB_CONTROLLER_REPO (a git directory with the tag).
    name=aws-load-balancer-controller
    if [ -n "${ALB_CONTROLLER_REPO:-}" ]; then
      git -C "$ALB_CONTROLLER_REPO" archive --prefix=src/ "v$version" helm/$name | tar -x -C "$work"
      chart="$work/src/helm/$name"
    else
      proxy="${GOPROXY:-https://proxy.golang.org}"; proxy="${proxy%%,*}"
      curl -sSfL -o "$work/module.zip" "$proxy/sigs.k8s.io/$name/v3/@v/v$version.zip"
      (cd "$work" && unzip -q module.zip "sigs.k8s.io/$name/v3@v$version/helm/$name/*")
      chart="$work/sigs.k8s.io/$name/v3@v$version/helm/$name"
    fi
    out="$root/include/kubernetes/$name/$name-v$version.yaml"
    # The project makes the ServiceAccount (with its IRSA role) and the alb IngressClass with
    # its IngressClassParams (eksml.cluster.loadbalancer); region and VPC are given because the
    # hop limit of 1 keeps the controller from the instance metadata. No Service mutator
    # webhook: it would make every Service create in the cluster depend on the controller
    # (failurePolicy Fail), and the project's Services are reached through the Ingress.
    "$helm" template "$name" "$chart" --namespace kube-system --kube-version 1.35 \
      --set clusterName='${CLUSTER_NAME}' --set region='${AWS_REGION}' --set vpcId='${VPC_ID}' \
      --set serviceAccount.create=false --set serviceAccount.name="$name" \
      --set createIngressClassResource=false --set enableServiceMutatorWebhook=false \
      --set 'nodeSelector.role=${NODE_ROLE}' \
      >"$work/rendered.yaml"
    # The chart makes its webhook's CA, serving certificate and key at render time (genCA) and
    # writes them into a Secret and the webhooks' caBundle: the Secret is left out and the
    # caBundle becomes a placeholder; eksml.cluster.loadbalancer makes both at install time.
    awk 'BEGIN { RS = "\n---\n" } { sub(/^---\n/, ""); sub(/\n$/, "") }
         $0 !~ /(^|\n)kind: Secret\n/ { print "---"; print }' "$work/rendered.yaml" \
      | sed -E 's/^( *caBundle: ).*/\1${WEBHOOK_CA_BUNDLE}/' >"$out"
    if grep -Eq 'tls\.key|BEGIN|kind: Secret' "$out"; then
      echo "$out still holds key material" >&2
      exit 1
    fi
    (cd "$(dirname "$out")" && sha256sum "$(basename "$out")")
    ;;
  *)
    echo "usage: $0 karpenter|aws-load-balancer-controller" >&2
    exit 2
    ;;
esac
