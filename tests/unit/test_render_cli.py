"""``python -m eksml.render --profile aws --out DIR``: every object the aws profile would send,
each valid against the official Kubernetes schemas (and the MPIJob against its CRD)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fixtures.published_schemas import mpijob_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    result = subprocess.run(
        [sys.executable, "-m", "eksml.render", "--profile", "aws", "--out", str(out)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(out / "airflow-home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(out.glob("*.yaml"))
    return {path.name: yaml.safe_load(path.read_text()) for path in files}


def test_one_object_per_file_covering_the_profile(rendered):
    kinds = [obj["kind"] for obj in rendered.values()]
    for kind in ("Namespace", "ServiceAccount", "Role", "RoleBinding", "Pod", "MPIJob", "Deployment", "Service"):
        assert kind in kinds, kind
    pods = {obj["metadata"]["name"]: obj for obj in rendered.values() if obj["kind"] == "Pod"}
    train = pods["train-tensorflow"]["spec"]
    assert train["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert train["nodeSelector"] == {"role": "train"}
    sas = [o for o in rendered.values() if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "training"]
    assert sas and "eks.amazonaws.com/role-arn" in sas[0]["metadata"]["annotations"]


def test_core_objects_valid_strict(rendered):
    for obj in rendered.values():
        if obj["apiVersion"].startswith("kubeflow.org/"):
            continue
        kubernetes_validate.validate(obj, "1.33", strict=True)


def test_mpijob_valid_against_crd(rendered):
    schema = mpijob_schema()
    jobs = [obj for obj in rendered.values() if obj["kind"] == "MPIJob"]
    assert len(jobs) == 1
    jsonschema.validate(jobs[0], schema)
    assert jobs[0]["spec"]["launcherCreationPolicy"] == "WaitForWorkersReady"


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("EKSML_TRAINING_SERVICE_ACCOUNT", "a b", "training_service_account must be a Kubernetes service account name"),
        ("EKSML_IMAGE_TAG", "0.1;reboot", "image_tag must be an image tag"),
        ("EKSML_NAMESPACE", "Bad_NS", "namespace must be a Kubernetes namespace name"),
        ("EKSML_INFERENCE_PORT", "eighty", "inference_port must be an integer"),
    ],
)
def test_settings_kubernetes_would_reject_fail_render_with_a_message(tmp_path, setting, value, message):
    result = subprocess.run(
        [sys.executable, "-m", "eksml.render", "--profile", "aws", "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env={
            "PYTHONPATH": str(ROOT / "plugins"),
            "PATH": "/usr/bin:/bin",
            "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
            setting: value,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
