from __future__ import annotations

import pytest

from eksml.settings import SettingsError, load_settings


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("EKSML_PROFILE", "aws")
    monkeypatch.setenv("EKSML_STORE_URI", "s3://my-bucket/ml")
    monkeypatch.setenv("EKSML_SAGEMAKER_SUBNETS", "subnet-1, subnet-2")
    settings = load_settings()
    assert settings.profile == "aws"
    assert settings.models_root == "s3://my-bucket/ml/models/fashion-mnist"
    assert settings.sagemaker_subnets == ("subnet-1", "subnet-2")


def test_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("EKSML_PROFILE", "gcp")
    with pytest.raises(SettingsError, match="unknown profile 'gcp'"):
        load_settings()


def test_bad_store_and_unknown_key():
    with pytest.raises(SettingsError, match="store_uri must start with"):
        load_settings({"store_uri": "ftp://x"})
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings({"nope": 1})


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("training_service_account", "a b", "training_service_account must be a Kubernetes service account name"),
        ("image_tag", "0.1;rm -rf", "image_tag must be an image tag"),
        ("image_registry", "Registry With Spaces", "image_registry must be an image registry"),
        ("namespace", "Bad_Namespace", "namespace must be a Kubernetes namespace name"),
        ("inference_namespace", "x" * 64, "inference_namespace must be a Kubernetes namespace name"),
        ("cluster_name", "1cluster", "cluster_name must be an EKS cluster name"),
        ("inference_port", "http", "inference_port must be an integer, got 'http'"),
        ("inference_port", "70000", "inference_port must be within 1..65535"),
    ],
)
def test_settings_kubernetes_would_reject_are_refused(monkeypatch, name, value, message):
    monkeypatch.setenv(f"EKSML_{name.upper()}", value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


# --- the eksml_settings Variable --------------------------------------------------------------
def test_the_variable_overrides_the_environment_without_a_metadata_database(monkeypatch):
    """Outside a task Airflow answers from its environment backend: no database is needed."""
    from eksml.settings import resolve_settings

    monkeypatch.setenv("EKSML_REGION", "eu-west-1")
    monkeypatch.setenv("AIRFLOW_VAR_EKSML_SETTINGS", '{"region": "eu-central-1", "cluster_name": "team-a"}')
    settings = resolve_settings()
    assert (settings.region, settings.cluster_name) == ("eu-central-1", "team-a")
    assert load_settings().region == "eu-west-1"  # the offline entry point reads the environment only
    monkeypatch.delenv("AIRFLOW_VAR_EKSML_SETTINGS")
    assert resolve_settings().region == "eu-west-1"


def test_a_variable_that_is_no_json_object_is_refused(monkeypatch):
    from eksml.settings import resolve_settings

    monkeypatch.setenv("AIRFLOW_VAR_EKSML_SETTINGS", "{profile: aws")
    with pytest.raises(SettingsError, match="eksml_settings is not valid JSON"):
        resolve_settings()
    monkeypatch.setenv("AIRFLOW_VAR_EKSML_SETTINGS", '["aws"]')
    with pytest.raises(SettingsError, match="must be a JSON object"):
        resolve_settings()


class _DeniedBackend:
    """A secrets backend that refuses, as the Execution API does with a 403 (it raises the same
    exception). It stands in for the backend only: Airflow's own lookup code runs unchanged;
    what a real API server answers is not exercised here."""

    def get_variable(self, key, team_name=None):
        from airflow.sdk.exceptions import AirflowSecretsBackendAccessDenied

        raise AirflowSecretsBackendAccessDenied(f"access to variable {key} denied")

    def get_connection(self, conn_id, team_name=None):  # pragma: no cover - not asked
        return None


def test_a_failed_variable_read_fails_with_the_reason_instead_of_falling_back(monkeypatch):
    """Before: any exception was swallowed and the run went on with the environment's (local)
    profile, whatever the Variable said."""
    import airflow.sdk.execution_time.supervisor as supervisor

    from eksml.settings import resolve_settings

    monkeypatch.setattr(supervisor, "ensure_secrets_backend_loaded", lambda: [_DeniedBackend()])
    with pytest.raises(SettingsError, match="reading the Airflow Variable eksml_settings failed.*denied"):
        resolve_settings()
    assert load_settings().profile == "local"  # offline tools do not ask Airflow


def test_an_operator_fails_its_task_when_the_settings_cannot_be_read(monkeypatch):
    import airflow.sdk.execution_time.supervisor as supervisor

    from eksml.cluster.operators import GpuCapacityOperator

    monkeypatch.setattr(supervisor, "ensure_secrets_backend_loaded", lambda: [_DeniedBackend()])
    with pytest.raises(SettingsError, match="eksml_settings failed"):
        GpuCapacityOperator(task_id="gate").execute({})


# --- connection ids ---------------------------------------------------------------------------
def test_operators_take_the_connection_the_settings_name(monkeypatch):
    import copy
    import pickle

    from eksml.cluster.lifecycle import EksctlClusterOperator
    from eksml.cluster.operators import ClusterAddonsOperator, GpuCapacityOperator
    from eksml.settings import FROM_SETTINGS

    monkeypatch.setenv("EKSML_AWS_CONN_ID", "team_aws")
    for op_class in (ClusterAddonsOperator, GpuCapacityOperator, EksctlClusterOperator):
        op = op_class(task_id="t")
        assert op.aws_conn_id is FROM_SETTINGS
        assert (
            copy.deepcopy(op.aws_conn_id) is FROM_SETTINGS
            and pickle.loads(pickle.dumps(FROM_SETTINGS)) is FROM_SETTINGS
        )
        assert op.resolved_aws_conn_id() == "team_aws"
        assert op_class(task_id="t", aws_conn_id="other").resolved_aws_conn_id() == "other"
        assert op_class(task_id="t", aws_conn_id=None).resolved_aws_conn_id() is None  # the worker's own identity


def test_sagemaker_operator_follows_the_settings_connection_and_region(monkeypatch):
    """Built on the provider's operator, whose own defaults (``aws_default``, no region) give
    way to the settings; arguments given to the task win."""
    from eksml.sagemaker.operators import SageMakerTrainOperator

    monkeypatch.setenv("EKSML_AWS_CONN_ID", "team_aws")
    monkeypatch.setenv("EKSML_REGION", "eu-west-1")
    op = SageMakerTrainOperator(task_id="t", spec="{{ x }}")
    op.resolved_settings()
    assert (op.aws_conn_id, op.region_name) == ("team_aws", "eu-west-1")
    assert (op.hook.aws_conn_id, op.hook.region_name) == ("team_aws", "eu-west-1")
    given = SageMakerTrainOperator(task_id="t", spec="{{ x }}", aws_conn_id="mine", region_name="us-east-2")
    given.resolved_settings()
    assert (given.aws_conn_id, given.region_name) == ("mine", "us-east-2")


def test_the_run_note_goes_through_the_connection_the_settings_name(monkeypatch):
    from types import SimpleNamespace

    import eksml.outcome as outcome

    used = []
    monkeypatch.setattr(outcome, "write_run_note", lambda dag_id, run_id, note, conn_id: used.append(conn_id))
    monkeypatch.setenv("EKSML_AIRFLOW_API_CONN_ID", "team_api")
    registered = [{"version": "v1", "uri": "s3://b/ml/models/fashion-mnist/v1", "test_accuracy": 0.9}]
    pointer = {"version": "v1", "uri": registered[0]["uri"], "test_accuracy": 0.9}
    ti = SimpleNamespace(
        xcom_pull=lambda task_ids: registered if task_ids == "register" else pointer, xcom_push=lambda **kw: None
    )
    context = {"ti": ti, "dag_run": SimpleNamespace(dag_id="d", run_id="r")}
    outcome.RunOutcomeOperator(task_id="outcome").execute(context)
    outcome.RunOutcomeOperator(task_id="outcome", api_conn_id="mine").execute(context)
    assert used == ["team_api", "mine"]


def test_the_default_aws_connection_is_spelled_once():
    """Only Settings names ``aws_default``; code takes the id from there (README aside)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*(root / "plugins").rglob("*.py"), *(root / "dags").rglob("*.py")]:
        text = path.read_text()
        count = text.count('"aws_default"') + text.count("'aws_default'")
        home = path.name == "settings.py" and path.parent.name == "eksml"
        if count - home or ("use_airflow_variable" in text and not home):
            offenders.append(str(path.relative_to(root)))
    assert offenders == []


# --- deferrable defaults ----------------------------------------------------------------------
_DEFERRABLE_DEFAULTS = """
import json
from eksml.cluster.lifecycle import EksctlClusterOperator
from eksml.kubernetes.operators import GpuTrainingPodOperator, MPIJobOperator
from eksml.sagemaker.operators import SageMakerTrainOperator

print(json.dumps({
    "eksctl": EksctlClusterOperator(task_id="a").deferrable,
    "sagemaker_training": SageMakerTrainOperator(task_id="b", spec="{{ x }}").deferrable,
    "gpu_pod": GpuTrainingPodOperator(task_id="d", spec="{{ x }}").deferrable,
    "mpijob": MPIJobOperator(task_id="e", spec="{{ x }}").deferrable,
}))
"""


@pytest.mark.parametrize("configured", ["True", "False"])
def test_deferrable_defaults_follow_airflows_option(configured, tmp_path):
    """As the providers' operators: ``[operators] default_deferrable``, read when the module loads."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": configured,
        "PYTHONPATH": str(root / "plugins"),
    }
    out = subprocess.run(
        [sys.executable, "-c", _DEFERRABLE_DEFAULTS], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    defaults = json.loads(out.stdout.strip().splitlines()[-1])
    assert defaults == dict.fromkeys(defaults, configured == "True") and len(defaults) == 4
