"""Specs reach the training operators through XCom in three shapes; each must become the same
checked spec, and a bad one must fail with a message that names the problem."""

from __future__ import annotations

import json

import pytest

from eksml.kubernetes.manifests import CredentialInSpecError, check_no_credentials, env_vars
from eksml.specs import WorkloadSpecError, coerce_spec, training_spec


@pytest.fixture(scope="module")
def spec():
    return training_spec(
        framework="mxnet",
        data_uri="s3://b/data/x",
        model_uri="s3://b/models/v1",
        checkpoint_uri="s3://b/ckpt/v1",
        epochs=3,
        batch_size=64,
        learning_rate=0.01,
        gpus=2,
        workers=3,
        run_labels={"eksml/dag-id": "fashion-mnist-training"},
    )


def test_every_xcom_shape_gives_the_same_spec(spec):
    as_dict = spec.to_dict()
    assert coerce_spec(spec) == spec
    assert coerce_spec(as_dict) == spec
    assert coerce_spec(json.dumps(as_dict)) == spec
    # A dict pulled from XCom without render_template_as_native_obj renders as its Python repr.
    assert coerce_spec(str(as_dict)) == spec
    assert coerce_spec(spec).total_processes == 6


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "pushed nothing"),
        ("None", "pushed nothing"),
        ("", "empty string"),
        ("{not json", "neither JSON nor a dict literal"),
        ("[1, 2]", "must be a mapping"),
        ({"image": "tf-fashion-mnist"}, "lacks name, script"),
    ],
)
def test_missing_or_unparsable_spec_is_named(value, message):
    with pytest.raises(WorkloadSpecError, match=message):
        coerce_spec(value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "blue"}, "unexpected fields"),
        ({"resources": {"cpu": "4", "gpu": 1}}, "unexpected fields"),
        ({"image": "Bad Image"}, "image 'Bad Image'"),
        ({"script": "../../etc/passwd.py"}, "relative .py path"),
        ({"script": "/opt/train.py"}, "relative .py path"),
        ({"args": ["--epochs", 5]}, "every argument must be a string"),
        ({"replicas": 0}, "replicas must be an integer >= 1"),
        ({"slots_per_replica": 0}, "slots_per_replica"),
        ({"resources": {"cpu": "4", "memory": "lots", "gpus": 1}}, "resources.memory 'lots'"),
        ({"resources": {"cpu": "0", "memory": "1Gi", "gpus": 1}}, "resources.cpu '0'"),
        ({"resources": {"cpu": "1", "memory": "1Gi", "gpus": -1}}, "resources.gpus"),
        ({"env": {"1BAD": "x"}}, "C identifier"),
        ({"node_role": ""}, "node_role"),
        ({"framework": "pytorch"}, "unknown framework 'pytorch'"),
        ({"locations": {"data_uri": 5}}, "location 'data_uri' must be a non-empty string"),
        ({"locations": {"Data-URI": "s3://b/d"}}, "location name 'Data-URI'"),
        ({"hyperparameters": {"epochs": True}}, "hyperparameter 'epochs'"),
        ({"hyperparameters": {"learning_rate": float("nan")}}, "hyperparameter 'learning_rate'"),
        ({"hyperparameters": {"data_uri": "x"}}, "data_uri is both a location and a hyperparameter"),
        ({"locations": "s3://b/d"}, "unexpected fields"),
    ],
)
def test_inconsistent_fields_are_named(spec, change, message):
    with pytest.raises(WorkloadSpecError, match=message):
        coerce_spec({**spec.to_dict(), **change})


@pytest.mark.parametrize(
    "name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD", "WANDB_API_KEY"]
)
def test_credentials_never_go_into_a_pod(name):
    with pytest.raises(CredentialInSpecError, match=f"{name}.*IRSA"):
        env_vars({"PYTHONUNBUFFERED": "1", name: "x"})


def test_ordinary_and_irsa_variables_pass():
    env = {"PYTHONUNBUFFERED": "1", "AWS_REGION": "us-west-2", "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token"}
    check_no_credentials(env)
    assert [(v.name, v.value) for v in env_vars(env)] == list(env.items())


def test_named_inputs_become_argv_only_at_the_edge(spec):
    """Locations and hyperparameters are kept by name; argv() flattens them, in that order."""
    assert spec.framework == "mxnet"
    assert dict(spec.locations) == {
        "data_uri": "s3://b/data/x",
        "model_uri": "s3://b/models/v1",
        "checkpoint_uri": "s3://b/ckpt/v1",
    }
    assert dict(spec.hyperparameters) == {"epochs": 3, "batch_size": 64, "learning_rate": 0.01}
    assert spec.args == ()
    assert spec.argv() == [
        "--data-uri", "s3://b/data/x", "--model-uri", "s3://b/models/v1", "--checkpoint-uri", "s3://b/ckpt/v1",
        "--epochs", "3", "--batch-size", "64", "--learning-rate", "0.01",
    ]  # fmt: skip
