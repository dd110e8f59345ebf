"""ClusterConfig model: eksctl's published JSON schema, project conventions, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures.published_schemas import eksctl_cluster_config_schema

from eksml.cluster.config import ClusterConfigError, render_stream, render_yaml
from eksml.cluster.iam import S3Location, StoreUriError, training_policy
from eksml.cluster.request import ClusterRequest, build_cluster_configs
from eksml.settings import Settings

REPO = Path(__file__).resolve().parents[2]
STORE = "s3://ml-store-bucket/eksml"


def request(**overrides) -> ClusterRequest:
    return ClusterRequest.from_settings(Settings(store_uri=STORE), **overrides)


@pytest.fixture(scope="module")
def validator():
    import jsonschema

    schema = eksctl_cluster_config_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"spot": True, "train_instance_types": ("g5.12xlarge", "g6.12xlarge", "g6e.12xlarge"), "train_nodes": 2},
        {"dedicated_training_cluster": True},
        {
            "pipeline_principal_arn": "arn:aws:iam::123456789012:role/airflow",
            "availability_zones": ("us-west-2a", "us-west-2b"),
        },
    ],
    ids=["default", "spot", "dedicated", "access-entry-and-zones"],
)
def test_rendered_yaml_is_valid_against_eksctl_schema(validator, overrides):
    configs = build_cluster_configs(request(**overrides))
    for doc in yaml.safe_load_all(render_stream(configs)):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
        assert doc["apiVersion"] == "eksctl.io/v1alpha5" and doc["kind"] == "ClusterConfig"


def test_schema_catches_a_misspelt_field(validator):
    """The validator is strict (additionalProperties false), so the checks above mean something."""
    doc = build_cluster_configs(request())[0].to_dict()
    doc["managedNodeGroups"][0]["desiredCapcity"] = 1
    assert any("desiredCapcity" in e.message for e in validator.iter_errors(doc))


def test_default_cluster_node_groups_labels_taints_and_autoscaler_tags():
    (cfg,) = build_cluster_configs(request())
    doc = cfg.to_dict()
    assert doc["metadata"] == {
        "name": "eksml",
        "region": "us-west-2",
        "version": "1.35",
        "tags": {"eksml/project": "eksml"},
    }
    train, inference = doc["managedNodeGroups"]
    assert train["name"] == "ng-train" and train["instanceType"] == "g5.xlarge" and "spot" not in train
    # cluster-autoscaler AWS README, "Special note on GPU instances": the accelerator label on GPU
    # nodes (and as a node-template tag for scale-from-zero) keeps it from scaling out again while
    # the device plugin has not advertised the GPUs yet
    assert train["labels"] == {"role": "train", "k8s.amazonaws.com/accelerator": "nvidia-a10g"}
    assert train["tags"]["k8s.io/cluster-autoscaler/node-template/label/k8s.amazonaws.com/accelerator"] == "nvidia-a10g"
    assert train["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert (train["minSize"], train["desiredCapacity"], train["maxSize"]) == (0, 0, 4)
    assert train["tags"]["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] == "1"
    assert train["tags"]["k8s.io/cluster-autoscaler/node-template/label/role"] == "train"
    assert train["tags"]["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] == "present:NoSchedule"
    assert train["tags"]["k8s.io/cluster-autoscaler/eksml"] == "owned"
    assert inference["name"] == "ng-inference" and inference["instanceType"] == "m5.2xlarge"
    assert inference["labels"] == {"role": "inference"} and "taints" not in inference
    assert inference["minSize"] >= 1  # system pods need an untainted node


def test_irsa_roles_are_role_only_and_scoped_to_the_store_bucket():
    (cfg,) = build_cluster_configs(request())
    accounts = {
        f"{a['metadata']['namespace']}/{a['metadata']['name']}": a for a in cfg.to_dict()["iam"]["serviceAccounts"]
    }
    assert set(accounts) == {"kube-system/cluster-autoscaler", "ml-training/training", "ml-serving/inference"}
    assert all(a["roleOnly"] is True for a in accounts.values())
    assert accounts["kube-system/cluster-autoscaler"]["wellKnownPolicies"] == {"autoScaler": True}
    train = accounts["ml-training/training"]["attachPolicy"]["Statement"]
    # the attached document is the one rendered from the layout's access table, scoped to the store
    assert accounts["ml-training/training"]["attachPolicy"] == training_policy(STORE, "fashion-mnist", "us-west-2")
    by_sid = {s["Sid"]: s for s in train}
    assert by_sid["DataRead"]["Resource"] == "arn:aws:s3:::ml-store-bucket/eksml/data/fashion-mnist/*"
    assert by_sid["CheckpointsReadWriteDelete"]["Resource"] == (
        "arn:aws:s3:::ml-store-bucket/eksml/checkpoints/fashion-mnist/*"
    )
    assert by_sid["ModelsRead"]["Action"] == ["s3:GetObject"]  # the registry is written by Airflow only
    inference = accounts["ml-serving/inference"]["attachPolicy"]["Statement"]
    actions = {a for s in inference for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetObject"}
    assert all("*" not in s["Resource"].split(":::")[1].split("/")[0] for s in train + inference)


def test_spot_group_lists_all_instance_types():
    (cfg,) = build_cluster_configs(request(spot=True, train_instance_types=("g5.xlarge", "g6.xlarge")))
    train = cfg.to_dict()["managedNodeGroups"][0]
    assert (
        train["spot"] is True and train["instanceTypes"] == ["g5.xlarge", "g6.xlarge"] and "instanceType" not in train
    )


def test_dedicated_training_cluster_has_its_own_system_group():
    train_cfg, serve_cfg = build_cluster_configs(request(dedicated_training_cluster=True))
    assert train_cfg.name == "eksml-training" and serve_cfg.name == "eksml"
    assert [ng.name for ng in train_cfg.node_groups] == ["ng-train", "ng-system"]
    assert [ng.name for ng in serve_cfg.node_groups] == ["ng-inference"]
    assert {sa.name for sa in train_cfg.service_accounts} == {"cluster-autoscaler", "training"}
    # evaluation runs on the serving cluster as the training service account: its IRSA role is there too
    assert {sa.name for sa in serve_cfg.service_accounts} == {"cluster-autoscaler", "training", "inference"}


def test_templated_text_values_are_coerced():
    req = request(
        train_nodes="3", spot="true", train_instance_types="g5.xlarge, g6.xlarge", dedicated_training_cluster="False"
    )
    assert (req.train_nodes, req.spot, req.train_instance_types, req.dedicated_training_cluster) == (
        3,
        True,
        ("g5.xlarge", "g6.xlarge"),
        False,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_instance_types": ("p3.8xlargee",)}, "not an EC2 instance type name"),
        ({"train_instance_types": ("m5.2xlarge",)}, "not a known NVIDIA GPU instance type"),
        ({"train_instance_types": ("p3.4xlarge",)}, "not a known NVIDIA GPU instance type"),
        ({"inference_instance_type": "x9.large"}, "unknown instance type 'x9.large'"),
        ({"inference_instance_type": "m7g.large"}, "arm64"),
        ({"train_nodes": 5, "train_max_nodes": 4}, "desired (5) > max (4)"),
        ({"train_min_nodes": 2, "train_nodes": 1}, "min (2) > desired (1)"),
        ({"train_nodes": -1}, "non-negative"),
        ({"name": "-starts-with-dash"}, "invalid cluster name"),
        ({"name": "has space"}, "invalid cluster name"),
        ({"name": "a" * 101}, "EKS allows 100"),
        ({"region": "us-west2"}, "invalid AWS region"),
        ({"region": "US-WEST-2"}, "invalid AWS region"),
        ({"kubernetes_version": "1.33.1"}, "invalid Kubernetes version"),
        ({"train_instance_types": ("g5.xlarge", "g5.12xlarge"), "spot": True}, "same GPU count"),
        ({"train_instance_types": ("g5.xlarge", "g6.xlarge")}, "need spot=True"),
        ({"store_uri": "file:///tmp/store"}, "need an s3:// store"),
        ({"inference_min_nodes": 0, "inference_nodes": 0}, "untainted node group"),
        ({"availability_zones": ("eu-west-1a",)}, "not in region"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(overrides, message):
    with pytest.raises(ClusterConfigError) as info:
        build_cluster_configs(request(**overrides))
    assert message in str(info.value)


def test_the_request_takes_every_shared_value_from_the_settings_and_repeats_no_default():
    """A field named like a setting (``name``: ``cluster_name``) has no default of its own: a
    second default drifts from the setting's the day one of them changes."""
    import dataclasses

    from eksml.cluster.request import FROM_SETTING

    setting_names = {f.name for f in dataclasses.fields(Settings)}
    shared = [f for f in dataclasses.fields(ClusterRequest) if FROM_SETTING.get(f.name, f.name) in setting_names]
    assert {f.name for f in shared} >= {"name", "region", "namespace", "ingress", "fsx_lustre", "node_scaler"}
    repeated = [
        f.name for f in shared if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert repeated == [], "take these from the settings instead of repeating their defaults"

    changed = {"namespace": "other-ns", "training_service_account": "trainer", "node_scaler": "karpenter"}
    req = ClusterRequest.from_settings(Settings(store_uri=STORE, **changed))
    assert {k: getattr(req, k) for k in changed} == changed


def test_a_non_integer_node_count_is_rejected():
    with pytest.raises(ClusterConfigError, match="train_max_nodes"):
        request(train_max_nodes=2.5)
    assert request(train_max_nodes="6").train_max_nodes == 6


def test_unknown_parameter_is_rejected():
    with pytest.raises(ClusterConfigError, match="unknown cluster parameter"):
        request(train_gpus=4)


def test_store_location_and_partition():
    assert S3Location.parse("s3://bucket-1/a/b/") == S3Location("bucket-1", "a/b")
    with pytest.raises(StoreUriError):
        S3Location.parse("s3://Bad_Bucket/x")
    china = training_policy("s3://bucket-1", "m", "cn-north-1")
    sids = {st["Sid"]: st for st in china["Statement"]}
    assert sids["DataRead"]["Resource"] == "arn:aws-cn:s3:::bucket-1/data/m/*"
    assert sids["HeadBucketAndMissingKeys"]["Resource"] == "arn:aws-cn:s3:::bucket-1"


def test_yaml_is_what_eksctl_reads():
    (cfg,) = build_cluster_configs(request())
    assert yaml.safe_load(render_yaml(cfg)) == cfg.to_dict()


def _cli(*args: str, store: str | None = STORE) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EKSML_")}
    env["PYTHONPATH"] = str(REPO / "plugins")
    if store:
        env["EKSML_STORE_URI"] = store
    return subprocess.run(
        [sys.executable, "-m", "eksml.cluster.eksctl", "render", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_render_prints_yaml(validator):
    result = _cli(
        "--name", "demo", "--region", "eu-west-1", "--train-instance-type", "g5.12xlarge", "--train-nodes", "2"
    )
    assert result.returncode == 0, result.stderr
    (doc,) = list(yaml.safe_load_all(result.stdout))
    assert doc["metadata"]["name"] == "demo" and doc["metadata"]["region"] == "eu-west-1"
    assert (
        doc["managedNodeGroups"][0]["instanceType"] == "g5.12xlarge"
        and doc["managedNodeGroups"][0]["desiredCapacity"] == 2
    )
    assert not list(validator.iter_errors(doc))


def test_cli_render_dedicated_and_spot():
    result = _cli(
        "--dedicated-training-cluster",
        "--spot",
        "--train-instance-type",
        "g5.xlarge",
        "--train-instance-type",
        "g6.xlarge",
    )
    assert result.returncode == 0, result.stderr
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout)]
    assert names == ["eksml-training", "eksml"]


def test_cli_render_bad_input_exits_2():
    result = _cli("--train-nodes", "9", "--train-max-nodes", "2")
    assert result.returncode == 2 and "desired (9) > max (2)" in result.stderr and result.stdout == ""
    assert _cli("--store-uri", "file:///tmp/x").returncode == 2


def test_cli_render_with_a_local_store_names_the_example_bucket_and_says_so():
    result = _cli(store=None)
    assert result.returncode == 0 and "eksml-example-bucket" in result.stdout and "not s3://" in result.stderr


def test_vendored_schema_is_the_eksctl_release_the_image_builds():
    """The schema the configs are checked against is the one of the eksctl the Airflow image runs."""
    from fixtures.published_schemas import EKSCTL_SCHEMA

    go_mod = (REPO / "docker" / "eksctl" / "go.mod").read_text()
    version = next(line.split()[-1] for line in go_mod.splitlines() if "github.com/weaveworks/eksctl " in line)
    assert f"eksctl-{version}-" in EKSCTL_SCHEMA.name
