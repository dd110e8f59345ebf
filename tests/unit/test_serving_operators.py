"""DeployModelOperator: light to import, and it refuses what cannot deploy before touching anything."""

from __future__ import annotations

import json
import subprocess
import sys

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
