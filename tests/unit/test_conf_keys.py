"""The API-server middleware that refuses unknown conf keys, in front of a real ASGI app.

The DAG's declared params come from the metadata database in the API server; here the lookup
is a dict. The same check against a real ``airflow standalone`` is in
tests/e2e/test_airflow_services.py (``{"epocs": 1}`` answered 400).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from eksml.conf_keys import UnknownConfKeysMiddleware, unknown_keys_problem

DECLARED = {"fashion_mnist_training": ["epochs", "framework", "learning_rate"], "no_params": []}


def client() -> TestClient:
    app = FastAPI()

    @app.post("/api/v2/dags/{dag_id}/dagRuns")
    async def trigger(dag_id: str, body: dict) -> dict:
        return {"dag_id": dag_id, "conf": body.get("conf")}

    @app.post("/api/v2/backfills")
    async def backfill(body: dict) -> dict:
        return body

    app.add_middleware(UnknownConfKeysMiddleware, lookup=DECLARED.get)
    return TestClient(app)


def test_a_misspelled_key_is_refused_with_the_nearest_declared_one():
    response = client().post("/api/v2/dags/fashion_mnist_training/dagRuns", json={"conf": {"epocs": 1}})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("unknown conf key 'epocs' (did you mean 'epochs'?)")


def test_declared_keys_dags_without_params_and_unknown_dags_pass_through():
    http = client()
    ok = http.post("/api/v2/dags/fashion_mnist_training/dagRuns", json={"conf": {"epochs": 2}})
    assert ok.status_code == 200 and ok.json()["conf"] == {"epochs": 2}
    assert http.post("/api/v2/dags/no_params/dagRuns", json={"conf": {"anything": 1}}).status_code == 200
    assert http.post("/api/v2/dags/missing/dagRuns", json={"conf": {"x": 1}}).status_code == 200


def test_a_backfill_conf_is_checked_too():
    body = {"dag_id": "fashion_mnist_training", "dag_run_conf": {"framwork": "mxnet"}}
    response = client().post("/api/v2/backfills", json=body)
    assert response.status_code == 400 and "did you mean 'framework'" in response.json()["detail"]


def test_no_hint_when_nothing_is_close():
    assert unknown_keys_problem("d", {"zzz": 1}, ["epochs"]) == "unknown conf key 'zzz' for d; its params are: epochs"
