from __future__ import annotations

from datetime import datetime, timezone

from eksml.params import validate_training_params
from eksml.runs import model_version, plan_run
from eksml.settings import load_settings
from eksml.specs import WorkloadSpec

START = datetime(2026, 11, 16, 3, tzinfo=timezone.utc)
END = datetime(2026, 11, 23, 3, tzinfo=timezone.utc)


def test_versions_are_unique_per_run_and_sortable_by_interval():
    a = model_version(END, "tensorflow", "scheduled__2026-11-23")
    assert a == model_version(END, "tensorflow", "scheduled__2026-11-23")  # a re-run is idempotent
    assert a != model_version(END, "tensorflow", "manual__2026-11-23")
    assert model_version(START, "tensorflow", "x") < a


def test_plan_paths_follow_the_interval_and_never_collide():
    settings = load_settings({"store_uri": "s3://bucket/ml"})
    params = validate_training_params({"framework": "both", "epochs": 3, "workers": 2, "gpus": 2})
    plan = plan_run(params, settings, run_id="r1", interval_start=START, interval_end=END, data_digest="c0ffee000000")
    assert plan["data_uri"] == "s3://bucket/ml/data/fashion-mnist/20261116T030000-20261123T030000-c0ffee000000"
    tf, mx = plan["candidates"]["tensorflow"], plan["candidates"]["mxnet"]
    assert tf["version"] != mx["version"]
    assert tf["staging_uri"].startswith("s3://bucket/ml/staging/") and tf["version"] in tf["staging_uri"]
    spec = WorkloadSpec.from_dict(mx["spec"])
    assert spec.distributed and spec.replicas == 2 and spec.slots_per_replica == 2
    args = spec.argv()
    assert args[args.index("--model-uri") + 1] == mx["staging_uri"]
    assert args[args.index("--epochs") + 1] == "3"
    other = plan_run(params, settings, run_id="r2", interval_start=START, interval_end=END, data_digest="c0ffee000000")
    assert other["candidates"]["tensorflow"]["version"] != tf["version"]
