"""The node contract: how the cluster's node groups and the pods that run on them find each other,
and which cluster of the topology a task or an object set is for.

The node groups eksctl creates, the training and serving pods, the MPIJob replicas, the
cluster autoscaler's own pod and the GPU readiness check must all agree on these names;
one spelled differently leaves training pods Pending with no error. They live here, and
only here (``tests/unit/test_node_contract.py`` fails when one is spelled elsewhere).
Nothing is imported, so every layer (config model, renderers, operators) can use it.
"""

from __future__ import annotations

#: Extended resource the NVIDIA device plugin advertises on GPU nodes (pod limits, allocatable).
GPU_RESOURCE = "nvidia.com/gpu"

#: The taint on GPU nodes, so that only pods that tolerate it (training) are placed there.
GPU_TAINT_KEY = GPU_RESOURCE
GPU_TAINT_VALUE = "present"
GPU_TAINT_EFFECT = "NoSchedule"

#: Node label naming a GPU node's model: the cluster autoscaler treats a node carrying it as a
#: GPU node still waiting for its device plugin, instead of scaling out again (AWS README).
ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"

#: Node label that tells node groups apart, and its values.
NODE_ROLE_LABEL = "role"
#: GPU nodes (tainted) for training.
TRAIN_ROLE = "train"
#: CPU nodes of the shared cluster: serving, evaluation, the MPI launcher, cluster add-ons.
INFERENCE_ROLE = "inference"
#: CPU nodes of a dedicated training cluster (add-ons and MPI launchers).
SYSTEM_ROLE = "system"
#: Roles of the CPU node groups, whichever cluster topology.
CPU_ROLES = (INFERENCE_ROLE, SYSTEM_ROLE)

#: Cluster roles: the shared cluster holds both sides; in the dedicated-training-cluster topology
#: training runs on ``<name>-training`` and serving (evaluation, inference) on ``<name>``.
SHARED_CLUSTER = "all"
TRAINING_CLUSTER = "training"
INFERENCE_CLUSTER = "inference"
CLUSTER_ROLES = (SHARED_CLUSTER, TRAINING_CLUSTER, INFERENCE_CLUSTER)
#: Cluster modes of a training run (its ``cluster`` param): the configured cluster, or one
#: created for the run and deleted after it.
EXISTING_CLUSTER = "existing"
EPHEMERAL_CLUSTER = "ephemeral"
CLUSTER_MODES = (EXISTING_CLUSTER, EPHEMERAL_CLUSTER)

#: Pod annotation that keeps the cluster autoscaler from evicting a running job's pod.
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"


#: Pod annotation that keeps Karpenter from disrupting (consolidating, expiring) a running job's node.
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
#: Pod annotation naming local volumes the cluster autoscaler may discard when it drains the node
#: (its default ``--skip-nodes-with-local-storage=true`` otherwise keeps any node whose pods have
#: an ``emptyDir``, so the serving nodes would never scale down). Cluster-autoscaler FAQ, "What
#: types of pods can prevent CA from removing a node?".
SAFE_TO_EVICT_LOCAL_VOLUMES_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"


def evictable_local_volumes(*volumes: str) -> dict[str, str]:
    """Annotations for a movable pod whose ``volumes`` hold only scratch data."""
    return {SAFE_TO_EVICT_LOCAL_VOLUMES_ANNOTATION: ",".join(volumes)}


def not_evictable() -> dict[str, str]:
    """Annotations for a pod that must not be moved while it runs (a training or MPI replica),
    understood by whichever node scaler runs: the cluster autoscaler or Karpenter."""
    return {SAFE_TO_EVICT_ANNOTATION: "false", DO_NOT_DISRUPT_ANNOTATION: "true"}


def node_selector(role: str) -> dict[str, str]:
    """Node selector for the node group with ``role``."""
    return {NODE_ROLE_LABEL: role}
