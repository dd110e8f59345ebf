"""The aws profile's production integrations in the rendered ClusterConfig and add-on objects:
a private API endpoint, nodes in private subnets with IMDSv2 and a hop limit of 1, CloudWatch
logs, and the AWS Load Balancer Controller's pinned CRDs, IngressClass and IRSA policy."""

from __future__ import annotations

import json

import pytest
from fixtures.specs import small_training_spec

from eksml.cluster.addons import ALB_CONTROLLER, AddonError, addon_objects, pinned_file
from eksml.cluster.config import ClusterConfigError
from eksml.cluster.objects import render_kubernetes_objects
from eksml.cluster.request import ClusterRequest, build_cluster_configs
from eksml.settings import Settings, SettingsError

STORE = "s3://eksml-bucket/store"
ACCOUNT = "123456789012"


def _config(**settings) -> dict:
    s = Settings(profile="aws", store_uri=STORE, **settings)
    (config,) = build_cluster_configs(ClusterRequest.from_settings(s))
    return config.to_dict()


def test_api_endpoint_is_private_by_default_and_nodes_have_no_public_address():
    doc = _config()
    assert doc["vpc"] == {"clusterEndpoints": {"privateAccess": True, "publicAccess": False}}
    for group in doc["managedNodeGroups"]:
        assert group["privateNetworking"] is True
        # eksctl's makeMetadataOptions: HttpTokens=required, HttpPutResponseHopLimit=1
        assert group["disableIMDSv1"] is True and group["disablePodIMDS"] is True


def test_public_api_access_is_only_from_the_listed_cidrs():
    doc = _config(api_public_access=True, api_public_cidrs=("203.0.113.0/24",))
    assert doc["vpc"]["clusterEndpoints"] == {"privateAccess": True, "publicAccess": True}
    assert doc["vpc"]["publicAccessCIDRs"] == ["203.0.113.0/24"]
    with pytest.raises(SettingsError, match="0.0.0.0/0 is never implied"):
        Settings(profile="aws", api_public_access=True)
    with pytest.raises(ClusterConfigError, match="not an IPv4 CIDR"):
        build_cluster_configs(
            ClusterRequest.from_settings(Settings(profile="aws", store_uri=STORE), api_public_cidrs="everyone")
        )


def test_existing_private_subnets_are_used_by_id():
    doc = _config(private_subnets=("subnet-0a1b2c3d4e5f60718",))
    assert doc["vpc"]["subnets"] == {"private": {"subnet-0a1b2c3d4e5f60718": {"id": "subnet-0a1b2c3d4e5f60718"}}}
    with pytest.raises(ClusterConfigError, match="not a subnet id"):
        build_cluster_configs(
            ClusterRequest.from_settings(Settings(profile="aws", store_uri=STORE), private_subnets="sg-123")
        )


def test_cloudwatch_logs_are_off_by_default_and_complete_when_on():
    assert "cloudWatch" not in _config() and "addons" not in _config()
    doc = _config(cloudwatch_logs=True)
    assert doc["cloudWatch"] == {"clusterLogging": {"enableTypes": ["api", "audit", "authenticator"]}}
    (addon,) = doc["addons"]
    assert addon["name"] == "amazon-cloudwatch-observability" and addon["version"].startswith("v")
    assert addon["attachPolicyARNs"] == ["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"]


def test_load_balancer_controller_gets_its_published_policy_only_when_the_ingress_is_on():
    names = lambda doc: {sa["metadata"]["name"] for sa in doc["iam"]["serviceAccounts"]}  # noqa: E731
    assert "aws-load-balancer-controller" not in names(_config())
    doc = _config(ingress=True, ingress_tls=False)
    (sa,) = [a for a in doc["iam"]["serviceAccounts"] if a["metadata"]["name"] == "aws-load-balancer-controller"]
    assert sa["metadata"]["namespace"] == "kube-system"
    published = json.loads(pinned_file(ALB_CONTROLLER, "iam-policy-v3.5.0.json").read_text())
    assert sa["attachPolicy"] == published
    actions = {
        a for st in published["Statement"] for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert "elasticloadbalancing:CreateLoadBalancer" in actions and "cognito-idp:DescribeUserPoolClient" in actions


def test_ingress_class_and_controller_crds_are_applied_with_the_ingress():
    off = render_kubernetes_objects(Settings(profile="aws", store_uri=STORE), account_id=ACCOUNT)
    assert not [o for o in off if o["kind"] in ("IngressClass", "IngressClassParams")]
    settings = Settings(
        profile="aws", store_uri=STORE, ingress=True, ingress_tls=False, ingress_inbound_cidrs=("10.0.0.0/8",)
    )
    objects = render_kubernetes_objects(settings, account_id=ACCOUNT)
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert {"ingressclassparams.elbv2.k8s.aws", "targetgroupbindings.elbv2.k8s.aws"} <= crds
    (cls,) = [o for o in objects if o["kind"] == "IngressClass"]
    assert cls["metadata"]["name"] == "alb" and cls["spec"]["controller"] == "ingress.k8s.aws/alb"
    (params,) = [o for o in objects if o["kind"] == "IngressClassParams"]
    assert params["spec"] == {"scheme": "internal", "ipAddressType": "ipv4", "inboundCIDRs": ["10.0.0.0/8"]}
    (sa,) = [
        o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "aws-load-balancer-controller"
    ]
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        ":role/eksml-us-west-2-aws-load-balancer-controller"  # IAM role names are account-global
    )


def test_a_changed_vendored_controller_file_is_refused(tmp_path):
    for name in ("kustomization.yaml", "addons.sha256", "aws-load-balancer-controller-crds-v3.5.0.yaml"):
        (tmp_path / name).write_bytes((ALB_CONTROLLER.parent / name).read_bytes())
    assert addon_objects(tmp_path / "kustomization.yaml")
    with (tmp_path / "aws-load-balancer-controller-crds-v3.5.0.yaml").open("a") as f:
        f.write("\n# edited\n")
    with pytest.raises(AddonError, match="does not match its pinned SHA-256"):
        addon_objects(tmp_path / "kustomization.yaml")
    with pytest.raises(AddonError, match="no pinned SHA-256"):
        pinned_file(tmp_path / "kustomization.yaml", "kustomization.yaml")


FSX = {"fsx_lustre": True, "fsx_subnet": "subnet-0a1b2c3d4e5f60718", "fsx_security_groups": ("sg-0123456789abcdef0",)}


def test_fsx_is_off_by_default_and_needs_where_to_live():
    assert "addons" not in _config()
    with pytest.raises(SettingsError, match="fsx_security_groups"):
        Settings(profile="aws", fsx_lustre=True)


def test_fsx_driver_add_on_storage_class_and_read_only_mounts():
    from eksml.kubernetes.manifests import render_mpijob
    from eksml.kubernetes.operators import render_training_pod

    (addon,) = _config(**FSX)["addons"]
    assert addon["name"] == "aws-fsx-csi-driver"
    assert "fsx:CreateFileSystem" in json.dumps(addon["attachPolicy"])
    settings = Settings(profile="aws", store_uri=STORE, **FSX)
    objects = render_kubernetes_objects(settings, account_id=ACCOUNT)
    (sc,) = [o for o in objects if o["kind"] == "StorageClass"]
    (claim,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert sc["provisioner"] == "fsx.csi.aws.com"
    assert sc["parameters"]["s3ImportPath"] == "s3://eksml-bucket/store/data/fashion-mnist"
    assert (
        claim["spec"]["storageClassName"] == sc["metadata"]["name"] and claim["metadata"]["namespace"] == "ml-training"
    )

    def spec(workers=1):
        return small_training_spec(STORE, "mxnet" if workers > 1 else "tensorflow", workers=workers)

    pod = render_training_pod(spec(), settings)
    (container,) = pod["spec"]["containers"]
    assert pod["spec"]["volumes"] == [
        {"name": "fsx-data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"], "readOnly": True}}
    ]
    assert {"name": "fsx-data", "mountPath": "/fsx/data", "readOnly": True} in container["volumeMounts"]
    # The trainer reads the data set from the mount: the file system's root is the data prefix.
    assert spec()["locations"]["data_uri"] == f"{STORE}/data/fashion-mnist/i"
    assert _flag(container["args"], "--data-uri") == "/fsx/data/i"
    job = render_mpijob(spec(workers=2), settings, "mpi-fsx")["spec"]["mpiReplicaSpecs"]
    worker = job["Worker"]["template"]["spec"]
    assert {"name": "fsx-data", "mountPath": "/fsx/data", "readOnly": True} in worker["containers"][0]["volumeMounts"]
    # horovodrun starts the entrypoint on the workers with the launcher's arguments.
    (launcher,) = job["Launcher"]["template"]["spec"]["containers"]
    assert _flag(launcher["command"] + launcher.get("args", []), "--data-uri") == "/fsx/data/i"
    # A data set outside the linked prefix is not on the file system: read from S3.
    elsewhere = small_training_spec("s3://other-bucket/sets", "tensorflow")
    (other,) = render_training_pod(elsewhere, settings)["spec"]["containers"]
    assert _flag(other["args"], "--data-uri") == "s3://other-bucket/sets/data/fashion-mnist/i"
    plain = render_training_pod(spec(), Settings(profile="aws", store_uri=STORE))
    assert not plain["spec"].get("volumes")  # S3 stays the default
    (plain_container,) = plain["spec"]["containers"]
    assert _flag(plain_container["args"], "--data-uri") == f"{STORE}/data/fashion-mnist/i"


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]
