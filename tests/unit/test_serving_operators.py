"""DeployModelOperator: light to import, it refuses what cannot deploy before touching anything, and
the local profile serves on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from eksml.settings import PROJECT_ROOT


def test_importing_the_operator_pulls_in_no_heavy_module():
    code = (
        "import sys; sys.path.insert(0, 'plugins'); import eksml.serving.operators; "
        "heavy = [m for m in ('tensorflow', 'onnxruntime', 'numpy', 'kubernetes', 'boto3', 'kserve') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def operator(**kwargs):
    from eksml.serving.operators import DeployModelOperator

    return DeployModelOperator(task_id="deploy", **kwargs)


def test_empty_version_fails_first():
    with pytest.raises(ValueError, match="model_uri and version are required"):
        operator(model_uri="s3://b/models/m/v1", version="").execute({})


def test_smoke_images_come_from_the_data_the_version_was_evaluated_on(tmp_path):
    version = tmp_path / "v1"
    version.mkdir()
    (version / "metadata.json").write_text(json.dumps({"data_uri": "file:///data/interval-7"}))
    op = operator(model_uri=version.as_uri(), version="v1")
    settings = op.resolved_settings()
    assert op._data_uri(settings) == "file:///data/interval-7"
    assert operator(model_uri=(tmp_path / "v2").as_uri(), version="v2")._data_uri(settings) == settings.source_data_uri
    assert operator(model_uri=version.as_uri(), version="v1", data_uri="s3://d")._data_uri(settings) == "s3://d"


def test_aws_profile_refuses_a_local_model_before_any_cluster_call(tmp_path):
    op = operator(
        model_uri=(tmp_path / "v1").as_uri(),
        version="v1",
        settings_overrides={"profile": "aws", "store_uri": "s3://bucket"},
    )
    with pytest.raises(ValueError, match="pods read models from S3"):
        op.execute({})


def test_templated_fields():
    from eksml.serving.operators import DeployModelOperator

    assert set(DeployModelOperator.template_fields) == {"model_uri", "version", "data_uri", "cluster_name"}


def _context(pushed: dict) -> dict:
    """A task context whose ``ti`` keeps what the operator pushes (its extra links' values)."""
    return {"ti": SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value))}


@pytest.fixture
def served(monkeypatch):
    """The calls to ``deploy_local``, which answers as a server that passed its smoke test would."""
    import eksml.serving.local as local

    calls = []

    def deploy_local(model_uri, version, port, **kwargs):
        calls.append({"model_uri": model_uri, "version": version, **kwargs})
        return {"version": version, "smoke": {"accuracy": 1.0, "images": 32, "threshold": 0.5}}

    monkeypatch.setattr(local, "deploy_local", deploy_local)
    return calls


def test_local_profile_serves_on_this_machine_with_the_versions_smoke_inputs(tmp_path, served):
    from eksml.kubernetes.links import PodLogsLink

    version = tmp_path / "v1"
    version.mkdir()
    (version / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9, "class_names": ["a", "b"]}))
    (version / "evaluation.json").write_text(json.dumps({"candidate": {"test_accuracy": 0.9}}))
    op = operator(
        model_uri=version.as_uri(), version="v1", data_uri="file:///data/d", settings_overrides={"profile": "local"}
    )
    pushed: dict = {}
    assert op.execute(_context(pushed))["version"] == "v1"
    assert [(c["model_uri"], c["version"], c["data_uri"]) for c in served] == [
        (version.as_uri(), "v1", "file:///data/d")
    ]
    assert served[0]["expectations"]["class_names"] == ["a", "b"]
    assert pushed == {PodLogsLink.key: None}  # no pod, so no pod-logs link


def test_local_profile_refuses_an_unfinished_version_before_starting_a_server(tmp_path, served):
    from eksml.serving.local import ServingError

    op = operator(model_uri=(tmp_path / "v1").as_uri(), version="v1", settings_overrides={"profile": "local"})
    with pytest.raises(ServingError):
        op.execute(_context({}))
    assert served == []
