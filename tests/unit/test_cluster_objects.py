"""Kubernetes objects the pipeline applies to a cluster: schema-valid, least privilege."""

from __future__ import annotations

import kubernetes_validate
import pytest

from eksml.cluster.autoscaler import IMAGES, AutoscalerVersionError, image_for
from eksml.cluster.objects import IRSA_ANNOTATION, render_kubernetes_objects
from eksml.settings import Settings

ACCOUNT = "210987654321"
SETTINGS = Settings()


def objects(role: str = "all", **kwargs):
    return render_kubernetes_objects(SETTINGS, cluster_role=role, account_id=ACCOUNT, **kwargs)


def by_ref(objs):
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objs}


@pytest.mark.parametrize("role", ["all", "training", "inference"])
def test_every_object_is_valid_kubernetes_strict(role):
    objs = objects(role)
    assert objs
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, SETTINGS.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_strict_validation_rejects_a_typo():
    """The check above is meaningful: a misspelt field fails strict validation."""
    sa = dict(objects()[2])
    sa["automountServiceAcountToken"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sa, SETTINGS.kubernetes_version, strict=True)


def test_shared_cluster_objects():
    refs = by_ref(objects("all"))
    assert ("Namespace", None, "ml-training") in refs and ("Namespace", None, "ml-serving") in refs
    training_sa = refs[("ServiceAccount", "ml-training", "training")]
    assert (
        training_sa["metadata"]["annotations"][IRSA_ANNOTATION]
        == f"arn:aws:iam::{ACCOUNT}:role/eksml-us-west-2-training"
    )
    assert training_sa["automountServiceAccountToken"] is False
    serving_sa = refs[("ServiceAccount", "ml-serving", "inference")]
    assert (
        serving_sa["metadata"]["annotations"][IRSA_ANNOTATION]
        == f"arn:aws:iam::{ACCOUNT}:role/eksml-us-west-2-inference"
    )
    autoscaler_sa = refs[("ServiceAccount", "kube-system", "cluster-autoscaler")]
    assert autoscaler_sa["metadata"]["annotations"][IRSA_ANNOTATION].endswith(
        ":role/eksml-us-west-2-cluster-autoscaler"
    )


def test_pipeline_roles_are_namespaced_and_least_privilege():
    refs = by_ref(objects("all"))
    train_role = refs[("Role", "ml-training", "eksml-pipeline")]
    serve_role = refs[("Role", "ml-serving", "eksml-pipeline")]
    grants = {(g, r) for rule in train_role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("", "pods"), ("", "pods/log"), ("kubeflow.org", "mpijobs")} <= grants
    assert {r for _, r in grants}.isdisjoint({"secrets", "pods/exec", "roles", "rolebindings", "*"})
    serve = {(g, r) for rule in serve_role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("apps", "deployments"), ("", "services")} <= serve and ("", "secrets") not in serve
    for role in (train_role, serve_role):
        assert all("*" not in rule["verbs"] for rule in role["rules"])
    binding = refs[("RoleBinding", "ml-training", "eksml-pipeline")]
    assert binding["roleRef"]["kind"] == "Role" and binding["subjects"][0] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Group",
        "name": "eksml-pipeline",
    }
    # Cluster-wide, only reading nodes (the GPU capacity check); in kube-system, only reading the
    # autoscaler's Deployment by name. A real API server refuses the check without them (tests/k8s).
    assert refs[("ClusterRole", None, "eksml-pipeline")]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
    ]
    assert refs[("Role", "kube-system", "eksml-pipeline")]["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["cluster-autoscaler"], "verbs": ["get"]}
    ]


def test_irsa_role_names_carry_the_region():
    """IAM role names are global to the account: the same cluster name in two regions must not share one."""
    west = objects("all")
    east = render_kubernetes_objects(SETTINGS.replace(region="us-east-2"), account_id=ACCOUNT)
    arns = [
        {o["metadata"]["annotations"][IRSA_ANNOTATION] for o in objs if o["kind"] == "ServiceAccount"}
        for objs in (west, east)
    ]
    assert len(arns[0]) == 3 and not arns[0] & arns[1]


def test_dedicated_clusters_split_the_objects():
    training = by_ref(objects("training"))
    inference = by_ref(objects("inference"))
    assert ("Namespace", None, "ml-serving") not in training
    # evaluation runs on the serving cluster, in the training namespace as the training account
    assert ("Namespace", None, "ml-training") in inference
    evaluation_sa = inference[("ServiceAccount", "ml-training", "training")]
    assert evaluation_sa["metadata"]["annotations"][IRSA_ANNOTATION].endswith(":role/eksml-us-west-2-training")
    role = inference[("Role", "ml-training", "eksml-pipeline")]
    # pods and their budgets (every job pod gets one), never MPIJobs
    assert {r for rule in role["rules"] for r in rule["resources"]} == {
        "pods",
        "pods/log",
        "events",
        "poddisruptionbudgets",
    }
    assert ("ClusterRole", None, "eksml-pipeline") not in inference  # no node reading: no GPUs there
    sa = training[("ServiceAccount", "ml-training", "training")]
    assert sa["metadata"]["annotations"][IRSA_ANNOTATION].endswith(":role/eksml-training-us-west-2-training")
    deploy = training[("Deployment", "kube-system", "cluster-autoscaler")]
    assert deploy["spec"]["template"]["spec"]["nodeSelector"] == {"role": "system"}
    deploy = inference[("Deployment", "kube-system", "cluster-autoscaler")]
    assert deploy["spec"]["template"]["spec"]["nodeSelector"] == {"role": "inference"}


def test_autoscaler_discovers_this_clusters_groups_with_the_matching_image():
    deploy = by_ref(objects("all", cluster_name="eksml-run-abc"))[("Deployment", "kube-system", "cluster-autoscaler")]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert (
        "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/eksml-run-abc"
        in container["command"]
    )
    assert container["image"] == IMAGES["1.35"] and container["image"].endswith(":v1.35.0")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_unpinned_kubernetes_version_is_an_error():
    with pytest.raises(AutoscalerVersionError, match="no pinned cluster-autoscaler for Kubernetes 1.29"):
        image_for("1.29")


def test_account_id_comes_from_the_environment_or_settings(monkeypatch):
    monkeypatch.setenv("AWS_ACCOUNT_ID", "111122223333")
    sa = by_ref(render_kubernetes_objects(SETTINGS))[("ServiceAccount", "ml-training", "training")]
    assert ":111122223333:" in sa["metadata"]["annotations"][IRSA_ANNOTATION]
    monkeypatch.delenv("AWS_ACCOUNT_ID")
    with_role = SETTINGS.replace(sagemaker_role_arn="arn:aws:iam::444455556666:role/eksml-sagemaker")
    sa = by_ref(render_kubernetes_objects(with_role))[("ServiceAccount", "ml-training", "training")]
    assert ":444455556666:" in sa["metadata"]["annotations"][IRSA_ANNOTATION]  # the SageMaker role's account
    with pytest.raises(ValueError, match="set AWS_ACCOUNT_ID"):
        render_kubernetes_objects(SETTINGS)  # no placeholder account any more
