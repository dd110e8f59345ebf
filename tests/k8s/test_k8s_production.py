"""The aws profile's production integrations admitted by a real API server.

The AWS Load Balancer Controller's pinned CRDs (IngressClassParams, TargetGroupBinding) and
the ``alb`` IngressClass are applied as the add-ons step applies them (cluster admin); the
pipeline identity then applies the inference objects (Deployment, Service,
PodDisruptionBudget, HorizontalPodAutoscaler, Ingress with HTTPS and Cognito sign-in) through
the Roles the project renders, and the API server validates each against its schema. What
this does not prove: that the controller, which is not running here, builds the ALB the
annotations describe (they are checked against the controller's own reference instead,
tests/unit/test_serving_manifests.py).
"""

from __future__ import annotations

import pytest
from conftest import ACCOUNT_ID, PIPELINE, aws_settings
from fixtures.specs import small_training_spec
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from eksml.cluster.apply import apply_objects
from eksml.cluster.loadbalancer import load_balancer_objects
from eksml.kubernetes.hooks import ROLLOUT_KINDS, DeploymentHook
from eksml.serving.manifests import render_inference_objects, resource_name

pytestmark = pytest.mark.k8s

NS = "ml-serving"
CERT = "arn:aws:acm:us-west-2:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
POOL = "arn:aws:cognito-idp:us-west-2:123456789012:userpool/us-west-2_AbCdEf123"
URI = "s3://eksml-bucket/store/models/alb-probe/v1"


def _https_settings(conn: str):
    return aws_settings(
        conn,
        model_name="alb-probe",  # its own Deployment: the rollout tests own fashion-mnist-inference
        ingress=True,
        ingress_certificate_arn=CERT,
        ingress_host="models.example.com",
        ingress_auth="cognito",
        ingress_cognito_user_pool_arn=POOL,
        ingress_cognito_client_id="client123",
        ingress_cognito_domain="eksml-login",
    )


@pytest.fixture(scope="module")
def alb_ready(prepared_cluster):
    """The controller's CRDs, IngressClassParams and IngressClass, applied in one go by the admin."""
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/eksml-aws-load-balancer-controller"
    apply_objects(
        prepared_cluster.api_client("admin"),
        load_balancer_objects(_https_settings("unused"), role),
        log=lambda _m: None,
    )
    return prepared_cluster


def test_controller_crds_are_established_and_the_alb_class_uses_its_params(alb_ready):
    api = alb_ready.api_client("admin")
    ext = client.ApiextensionsV1Api(api)
    for name in ("ingressclassparams.elbv2.k8s.aws", "targetgroupbindings.elbv2.k8s.aws"):
        crd = ext.read_custom_resource_definition(name)
        assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    ingress_class = client.NetworkingV1Api(api).read_ingress_class("alb")
    assert ingress_class.spec.controller == "ingress.k8s.aws/alb"
    params = client.CustomObjectsApi(api).get_cluster_custom_object(
        "elbv2.k8s.aws", "v1beta1", "ingressclassparams", "alb"
    )
    assert params["spec"]["scheme"] == "internal"


def test_a_target_group_binding_is_validated_by_the_pinned_schema(alb_ready):
    objects = client.CustomObjectsApi(alb_ready.api_client("admin"))
    body = {
        "apiVersion": "elbv2.k8s.aws/v1beta1",
        "kind": "TargetGroupBinding",
        "metadata": {"name": "schema-probe"},
        "spec": {
            "serviceRef": {"name": "fashion-mnist-inference", "port": 80},
            "targetGroupARN": "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/x/0123456789abcdef",
            "targetType": "ip",
        },
    }
    objects.create_namespaced_custom_object("elbv2.k8s.aws", "v1beta1", NS, "targetgroupbindings", body, dry_run="All")
    wrong = {**body, "spec": {**body["spec"], "targetType": "pod"}}  # not an enum value of the schema
    with pytest.raises(client.ApiException) as refused:
        objects.create_namespaced_custom_object(
            "elbv2.k8s.aws", "v1beta1", NS, "targetgroupbindings", wrong, dry_run="All"
        )
    assert refused.value.status == 422


def test_pipeline_applies_the_https_ingress_pdb_and_autoscaler(alb_ready):
    settings = _https_settings("unused")
    objects = render_inference_objects(settings, URI, "v1")
    assert [o["kind"] for o in objects][-3:] == ["PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress"]
    hook = DeploymentHook(conn_id=None, kubernetes_conn_id=None, config_file=str(alb_ready.kubeconfig(PIPELINE)))
    hook.apply_objects(objects, namespace=NS, kinds=ROLLOUT_KINDS)

    api = alb_ready.api_client("admin")
    name = resource_name(settings)
    ingress = client.NetworkingV1Api(api).read_namespaced_ingress(name, NS)
    assert ingress.spec.ingress_class_name == "alb" and ingress.spec.rules[0].host == "models.example.com"
    assert ingress.metadata.annotations["alb.ingress.kubernetes.io/certificate-arn"] == CERT
    assert ingress.metadata.annotations["alb.ingress.kubernetes.io/auth-type"] == "cognito"
    assert client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(name, NS).spec.max_unavailable == 1
    hpa = (
        DynamicClient(api)
        .resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
        .get(name=name, namespace=NS)
    )
    assert (hpa.spec.minReplicas, hpa.spec.maxReplicas) == (2, 6)
    deployment = client.AppsV1Api(api).read_namespaced_deployment(name, NS)
    spread = {c.topology_key for c in deployment.spec.template.spec.topology_spread_constraints}
    assert spread == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert deployment.spec.template.spec.containers[0].termination_message_policy == "FallbackToLogsOnError"


# --- batch-aware scaling ----------------------------------------------------------------------


def test_karpenter_node_pool_and_node_class_are_admitted_with_the_pinned_crds(prepared_cluster):
    """Karpenter's CRDs carry CEL validation rules; the real API server evaluates them. Its
    controller's objects (Deployment, RBAC, Service, PodDisruptionBudget) are admitted too."""
    from eksml.cluster.karpenter import karpenter_objects
    from eksml.cluster.request import ClusterRequest

    api = prepared_cluster.api_client("admin")
    req = ClusterRequest.from_settings(aws_settings("unused", node_scaler="karpenter"))
    apply_objects(
        api,
        karpenter_objects(req, "eksml", account_id=ACCOUNT_ID, controller_node_role="inference"),
        log=lambda _m: None,
    )
    custom = client.CustomObjectsApi(api)
    # The controller (its chart rendered at the pinned version) is admitted with the cluster's values.
    controller = client.AppsV1Api(api).read_namespaced_deployment("karpenter", "kube-system")
    env = {e.name: e.value for e in controller.spec.template.spec.containers[0].env if e.value is not None}
    assert env["CLUSTER_NAME"] == "eksml" and controller.spec.template.spec.node_selector["role"] == "inference"
    role = client.RbacAuthorizationV1Api(api).read_cluster_role("karpenter-core")
    assert any("nodeclaims" in (rule.resources or []) for rule in role.rules)
    pool = custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", "gpu-train")
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmpty"
    node_class = custom.get_cluster_custom_object("karpenter.k8s.aws", "v1", "ec2nodeclasses", "gpu-train")
    assert node_class["spec"]["metadataOptions"]["httpPutResponseHopLimit"] == 1
    # The schema's rules refuse what Karpenter could not honour (here: a NodePool without a node class).
    broken = {**pool, "metadata": {"name": "broken"}, "spec": {"template": {"spec": {"requirements": []}}}}
    with pytest.raises(client.ApiException) as refused:
        custom.create_cluster_custom_object("karpenter.sh", "v1", "nodepools", broken, dry_run="All")
    assert refused.value.status == 422


def test_a_jobs_budget_refuses_eviction_and_goes_with_the_job(prepared_cluster):
    """The pipeline creates a job's PodDisruptionBudget (its Role allows it); the API server's
    eviction, which a drain and both node scalers use, is then refused while the job runs, and
    the garbage collector removes the budget with its owner. The owner here is a Deployment
    (pods kwok keeps running), standing in for the MPIJob or pod the operators name."""
    from eksml.kubernetes.hooks import create_disruption_budget
    from eksml.kubernetes.manifests import JOB_POD_LABEL, job_disruption_budget
    from eksml.kubernetes.operators import render_training_pod

    admin = prepared_cluster.api_client("admin")
    core, apps, policy = client.CoreV1Api(admin), client.AppsV1Api(admin), client.PolicyV1Api(admin)
    spec = small_training_spec("s3://eksml-bucket/store", gpus=1)
    pod = render_training_pod(spec, aws_settings("unused"), name="budget-probe")
    labels = {JOB_POD_LABEL: "budget-probe"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "budget-probe", "namespace": "ml-training"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {**pod["spec"], "restartPolicy": "Always"}},
        },
    }
    created = apps.create_namespaced_deployment("ml-training", deployment)
    try:
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": created.to_dict()["metadata"]}
        budget = job_disruption_budget(owner, labels, pods=1)
        assert create_disruption_budget(prepared_cluster.api_client(PIPELINE), budget)
        assert not create_disruption_budget(prepared_cluster.api_client(PIPELINE), budget)  # a retry keeps it
        running = _wait(
            lambda: [
                p
                for p in core.list_namespaced_pod("ml-training", label_selector="eksml/job-pod=budget-probe").items
                if p.status.phase == "Running"
            ],
            what="the job's pod running",
        )[0]
        _wait(
            lambda: (
                policy.read_namespaced_pod_disruption_budget("budget-probe", "ml-training").status.current_healthy == 1
            ),
            what="the budget counting the pod",
        )
        eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=running.metadata.name, namespace="ml-training"))
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod_eviction(running.metadata.name, "ml-training", eviction)
        assert refused.value.status == 429, refused.value.body
    finally:
        apps.delete_namespaced_deployment("budget-probe", "ml-training", propagation_policy="Background")
    _wait(
        lambda: (
            not policy.list_namespaced_pod_disruption_budget(
                "ml-training", field_selector="metadata.name=budget-probe"
            ).items
        ),
        what="the budget collected with its owner",
    )


def _wait(read, what: str, timeout: float = 60.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_training_task_protects_its_pod_with_a_budget_it_owns(prepared_cluster, pipeline_conn):
    from k8s_tasks import run_task, task_context

    from eksml.kubernetes.operators import GpuTrainingPodOperator

    spec = small_training_spec("s3://eksml-bucket/store", gpus=1)
    operator = GpuTrainingPodOperator(
        task_id="train_budget",
        spec=spec,
        settings=aws_settings(pipeline_conn),
        on_finish_action="keep_pod",
        deferrable=True,
        poll_interval=0.5,
        startup_check_interval_seconds=1,
        logging_interval=60,
    )  # as in test_k8s_gpu_pod
    context = task_context("train_budget")
    run_task(operator, context)
    admin = prepared_cluster.api_client("admin")
    pod = client.CoreV1Api(admin).read_namespaced_pod(context["ti"].xcom["pod_name"], "ml-training")
    assert pod.spec.containers[0].termination_message_policy == "FallbackToLogsOnError"
    assert pod.metadata.annotations["karpenter.sh/do-not-disrupt"] == "true"
    budget = client.PolicyV1Api(admin).read_namespaced_pod_disruption_budget(pod.metadata.name, "ml-training")
    assert [(r.kind, r.uid) for r in budget.metadata.owner_references] == [("Pod", pod.metadata.uid)]
    assert budget.spec.min_available == 1
    assert budget.spec.selector.match_labels.items() <= pod.metadata.labels.items()


# --- FSx for Lustre --------------------------------------------------------------------------


def test_fsx_storage_class_claim_and_a_read_only_mount_are_admitted(prepared_cluster):
    """The driver's CSIDriver (vendored, pinned) stands in for the EKS add-on; the claim stays
    Pending here (no provisioner runs), the training pod that mounts it passes admission
    (restricted Pod Security included) as the pipeline identity."""
    from eksml.cluster.addons import addon_objects
    from eksml.cluster.fsx import FSX_DRIVER, fsx_objects
    from eksml.kubernetes.operators import render_training_pod

    settings = aws_settings(
        "unused", fsx_lustre=True, fsx_subnet="subnet-0a1b2c3d4e5f60718", fsx_security_groups=("sg-0123456789abcdef0",)
    )
    admin = prepared_cluster.api_client("admin")
    apply_objects(admin, [*addon_objects(FSX_DRIVER), *fsx_objects(settings)], log=lambda _m: None)
    storage = client.StorageV1Api(admin)
    assert storage.read_csi_driver("fsx.csi.aws.com").spec.attach_required is False
    assert storage.read_storage_class("eksml-fsx-lustre").parameters["s3ImportPath"].startswith("s3://eksml-bucket/")
    claim = client.CoreV1Api(admin).read_namespaced_persistent_volume_claim("eksml-data-fsx", "ml-training")
    assert claim.spec.access_modes == ["ReadWriteMany"]

    spec = small_training_spec("s3://eksml-bucket/store", gpus=1)
    pod = render_training_pod(spec, settings, name="fsx-probe")
    created = client.CoreV1Api(prepared_cluster.api_client(PIPELINE)).create_namespaced_pod(
        "ml-training", pod, dry_run="All"
    )
    (volume,) = [v for v in created.spec.volumes if v.persistent_volume_claim]
    assert volume.persistent_volume_claim.claim_name == "eksml-data-fsx" and volume.persistent_volume_claim.read_only
    # ... and its trainer reads the data set from the mount (the file system's root is the data prefix).
    (container,) = created.spec.containers
    assert container.args[container.args.index("--data-uri") + 1] == "/fsx/data/i"
    assert {(m.mount_path, m.read_only) for m in container.volume_mounts} >= {("/fsx/data", True)}


def test_a_new_version_keeps_the_replicas_the_autoscaler_chose(alb_ready):
    """The Deployment's replicas are the HPA's after the first rollout: the next version is
    applied with the running count (here set through the scale subresource, as the HPA does),
    not reset to the minimum."""
    from eksml.serving.operators import serving_replicas

    settings = _https_settings("unused").replace(model_name="scale-probe")
    hook = DeploymentHook(conn_id=None, kubernetes_conn_id=None, config_file=str(alb_ready.kubeconfig(PIPELINE)))
    name = resource_name(settings)
    assert serving_replicas(hook, name, NS) is None  # nothing serves yet
    hook.apply_objects(render_inference_objects(settings, URI, "v1"), namespace=NS, kinds=ROLLOUT_KINDS)
    apps = client.AppsV1Api(alb_ready.api_client("admin"))
    apps.patch_namespaced_deployment_scale(name, NS, {"spec": {"replicas": 4}})
    running = serving_replicas(hook, name, NS)
    assert running == 4
    hook.apply_objects(
        render_inference_objects(settings, URI.replace("v1", "v2"), "v2", replicas=running),
        namespace=NS,
        kinds=ROLLOUT_KINDS,
    )
    assert apps.read_namespaced_deployment(name, NS).spec.replicas == 4
