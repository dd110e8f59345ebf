"""Batch-aware scaling: a running job's pods are never evicted by a scale-down (annotation for
each node scaler, and a PodDisruptionBudget per job), and the Karpenter path that replaces the
GPU node group with a NodePool when the settings choose it."""

from __future__ import annotations

import pytest
from fixtures.specs import small_training_spec

from eksml.cluster.node_contract import not_evictable
from eksml.cluster.objects import TRAINING_RULES, render_kubernetes_objects
from eksml.cluster.request import ClusterRequest, build_cluster_configs
from eksml.kubernetes.manifests import job_disruption_budget, render_mpijob
from eksml.settings import Settings, SettingsError

STORE = "s3://eksml-bucket/store"
AWS = Settings(profile="aws", store_uri=STORE)


def test_job_pods_carry_both_scalers_do_not_evict_annotations():
    assert not_evictable() == {
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        "karpenter.sh/do-not-disrupt": "true",
    }
    spec = small_training_spec(STORE, "mxnet", workers=2)
    job = render_mpijob(spec, AWS, "mpi-x")
    for replica in ("Launcher", "Worker"):
        assert job["spec"]["mpiReplicaSpecs"][replica]["template"]["metadata"]["annotations"] == not_evictable()


def test_job_budget_allows_no_eviction_and_goes_with_its_job():
    owner = {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u-1"},
    }
    budget = job_disruption_budget(owner, {"training.kubeflow.org/job-name": "j"}, pods=3)
    assert budget["spec"] == {"minAvailable": 3, "selector": {"matchLabels": {"training.kubeflow.org/job-name": "j"}}}
    assert budget["metadata"]["ownerReferences"] == [
        {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "name": "j", "uid": "u-1"}
    ]
    assert any("poddisruptionbudgets" in rule["resources"] and "create" in rule["verbs"] for rule in TRAINING_RULES)


def test_karpenter_replaces_the_gpu_node_group_with_a_node_pool():
    (default,) = build_cluster_configs(ClusterRequest.from_settings(AWS))
    assert "ng-train" in {ng.name for ng in default.node_groups}
    (config,) = build_cluster_configs(ClusterRequest.from_settings(AWS.replace(node_scaler="karpenter")))
    assert "ng-train" not in {ng.name for ng in config.node_groups}
    assert config.to_dict()["metadata"]["tags"]["karpenter.sh/discovery"] == "eksml"

    objects = render_kubernetes_objects(AWS.replace(node_scaler="karpenter"), account_id="123456789012")
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {"nodepools.karpenter.sh", "ec2nodeclasses.karpenter.k8s.aws", "nodeclaims.karpenter.sh"} <= crds
    (pool,) = [o for o in objects if o["kind"] == "NodePool"]
    (node_class,) = [o for o in objects if o["kind"] == "EC2NodeClass"]
    template = pool["spec"]["template"]
    assert template["metadata"]["labels"] == {"role": "train"}
    assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    # The pool offers exactly the GPU node group's types, up to its max size in GPUs.
    (train_group,) = [ng for ng in default.node_groups if ng.name == "ng-train"]
    wanted_types = {
        "key": "node.kubernetes.io/instance-type",
        "operator": "In",
        "values": list(train_group.instance_types),
    }
    assert wanted_types in template["spec"]["requirements"]
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": str(train_group.max_size * train_group.gpus_per_node)}
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"
    assert node_class["spec"]["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert node_class["spec"]["associatePublicIPAddress"] is False
    default_objects = render_kubernetes_objects(AWS, account_id="123456789012")
    assert not [o for o in default_objects if o["kind"] in ("NodePool", "EC2NodeClass")]


def test_unknown_node_scaler_is_refused():
    with pytest.raises(SettingsError, match="node_scaler"):
        AWS.replace(node_scaler="escalator")


def test_karpenter_mode_installs_the_pinned_controller_with_the_clusters_values():
    """The controller is its Helm chart rendered at the pinned version (vendored, checksummed),
    its per-cluster values filled in; nothing is fetched."""
    objects = render_kubernetes_objects(AWS.replace(node_scaler="karpenter"), account_id="123456789012")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "karpenter"]
    assert deployment["metadata"]["namespace"] == "kube-system"
    pod = deployment["spec"]["template"]["spec"]
    (controller,) = pod["containers"]
    assert controller["image"] == "public.ecr.aws/karpenter/controller:1.15.2"
    env = {e["name"]: e.get("value") for e in controller["env"]}
    assert env["CLUSTER_NAME"] == "eksml" and env["AWS_REGION"] == "us-west-2"
    assert env["INTERRUPTION_QUEUE"] == "eksml"  # the queue eksml.cluster.karpenter_aws makes
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "role": "inference"}  # never a node it launched
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "karpenter"]
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/KarpenterControllerRole-eksml"
    }
    # Everything the chart renders comes before the NodePool that needs the controller's CRDs.
    kinds = [o["kind"] for o in objects]
    assert kinds.index("Deployment") < kinds.index("NodePool")
    assert "${" not in str(objects)
    # The dedicated training cluster runs it on its system nodes.
    training = render_kubernetes_objects(
        AWS.replace(node_scaler="karpenter", dedicated_training_cluster=True),
        account_id="123456789012",
        cluster_role="training",
    )
    (deployment,) = [o for o in training if o["kind"] == "Deployment" and o["metadata"]["name"] == "karpenter"]
    assert deployment["spec"]["template"]["spec"]["nodeSelector"]["role"] == "system"


def test_a_vendored_placeholder_without_a_value_is_refused():
    from eksml.cluster.addons import AddonError, substitute

    assert substitute("name: ${CLUSTER_NAME}", {"CLUSTER_NAME": "eksml"}, "f.yaml") == "name: eksml"
    with pytest.raises(AddonError, match="f.yaml: no value for AWS_REGION"):
        substitute("region: ${AWS_REGION}", {"CLUSTER_NAME": "eksml"}, "f.yaml")
