"""include/airflow_settings.yaml follows the Astro CLI's schema; the loader refuses anything else
before writing. (Loading into a real metadata database: tests/integration/test_airflow_settings_db.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eksml.airflow_objects import (
    CONNECTION_FIELDS,
    DEFAULT_FILE,
    POOL_FIELDS,
    VARIABLE_FIELDS,
    AirflowSettingsError,
    load_file,
)


def test_the_project_file_has_the_astro_shape():
    raw = yaml.safe_load(DEFAULT_FILE.read_text())
    assert set(raw) == {"airflow"} and set(raw["airflow"]) == {"connections", "pools", "variables"}
    data = load_file()
    assert {p["pool_name"]: p["pool_slot"] for p in data["pools"]} == {"gpu": 2, "eks_lifecycle": 1}
    assert [v["variable_name"] for v in data["variables"]] == ["eksml_settings"]
    assert {c["conn_id"] for c in data["connections"]} == {"aws_default", "kubernetes_default"}
    for key, fields in (("connections", CONNECTION_FIELDS), ("pools", POOL_FIELDS), ("variables", VARIABLE_FIELDS)):
        assert all(set(entry) <= fields for entry in data[key])


def test_the_aws_connection_is_the_settings_default():
    from eksml.settings import Settings

    assert Settings().aws_conn_id in {c["conn_id"] for c in load_file()["connections"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("pools:\n  - name: gpu\n    slots: 2\n", "the top level must be one mapping, airflow"),
        ("airflow:\n  pools:\n    - name: gpu\n      slots: 2\n", "unknown field.*name, slots.*pool_slot"),
        ("airflow:\n  pools:\n    - pool_name: gpu\n      pool_slot: 0\n", "pool_slot must be an integer >= 1"),
        ("airflow:\n  variables:\n    - variable_name: v\n      variable_value: {}\n", "must be a string"),
        ("airflow:\n  connections:\n    - conn_id: c\n", "needs conn_id and conn_type"),
        ("airflow:\n  dags: []\n", "unknown section"),
    ],
)
def test_a_file_off_the_schema_is_refused_before_anything_is_written(tmp_path: Path, text: str, message: str):
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(text)
    with pytest.raises(AirflowSettingsError, match=message):
        load_file(path)
