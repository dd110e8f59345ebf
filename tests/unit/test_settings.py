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

    from eksml.cluster.operators import ClusterAddonsOperator, GpuCapacityOperator
    from eksml.eksctl.operators import EksctlClusterOperator
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
