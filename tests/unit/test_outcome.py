"""What a run achieved, as the UI shows it: summary, run note, links, the champion event."""

from __future__ import annotations

from eksml.layout import PLOTS
from eksml.model_links import store_links
from eksml.outcome import summarize
from eksml.pipeline import champion_event_extra
from eksml.run_notes import deployment_note, failure_note, note_markdown

REGISTERED = [
    {
        "version": "v-tf",
        "uri": "s3://bucket/ml/models/fashion-mnist/v-tf",
        "framework": "tensorflow",
        "test_accuracy": 0.9012,
        "champion_version": "v-old",
        "champion_accuracy": 0.9100,
    },
    {
        "version": "v-mx",
        "uri": "s3://bucket/ml/models/fashion-mnist/v-mx",
        "framework": "mxnet",
        "test_accuracy": 0.8801,
        "champion_version": "v-old",
        "champion_accuracy": 0.9100,
    },
]


def test_refused_run_names_version_accuracy_and_the_champion():
    summary = summarize(REGISTERED, None)
    assert summary["outcome"] == "refused" and summary["version"] == "v-tf"
    assert summary["headline"] == "refused by the gate: v-tf test accuracy 0.9012 vs champion v-old at 0.9100"
    note = note_markdown(summary, store_links(summary["uri"], "us-west-2"))
    first, second, *_ = note.split("\n\n")
    # The run page shows the first line only: outcome, version (linked) and accuracies.
    link = "https://s3.console.aws.amazon.com/s3/buckets/bucket?region=us-west-2&prefix=ml/models/fashion-mnist/v-tf/"
    assert first == f"**REFUSED** [v-tf]({link}) test accuracy 0.9012 vs champion 0.9100"
    assert second == "champion: v-old"
    assert "also registered: v-mx (0.8801)" in note and len(note) <= 1000


def test_a_failed_run_and_a_deployment_get_notes_that_say_it():
    reason = "no Fashion-MNIST IDX files at /data/x: missing train-images-idx3-ubyte.gz | ... 2 line(s) ... | end"
    note = failure_note("validate_params", reason)
    assert note.startswith(
        "**FAILED** in validate_params: no Fashion-MNIST IDX files at /data/x: missing train-images-idx3-ubyte.gz\n\n"
    )
    pointer = {"version": "v-tf", "uri": REGISTERED[0]["uri"], "test_accuracy": 0.9012, "requested": True}
    deployed = deployment_note(pointer, store_links(pointer["uri"], "us-west-2"))
    assert deployed.startswith("**DEPLOYED** v-tf test accuracy 0.9012 is live\n\ndeployed by request")
    assert "[Model version](https://s3.console.aws.amazon.com/" in deployed


def test_promoted_run_reports_the_promoted_version():
    pointer = {"version": "v-mx", "uri": REGISTERED[1]["uri"], "test_accuracy": 0.8801}
    summary = summarize(REGISTERED, pointer)
    assert summary["outcome"] == "promoted" and summary["version"] == "v-mx"
    assert summary["headline"].startswith("promoted to champion: v-mx test accuracy 0.8801")


def test_nothing_registered():
    assert summarize([], None)["outcome"] == "nothing registered"


def test_links_open_the_version_its_metrics_and_plots():
    s3 = store_links("s3://bucket/ml/models/fashion-mnist/v1", "eu-west-1")
    assert s3["Model version"] == (
        "https://s3.console.aws.amazon.com/s3/buckets/bucket?region=eu-west-1&prefix=ml/models/fashion-mnist/v1/"
    )
    assert s3["Metrics"].endswith("prefix=ml/models/fashion-mnist/v1/metrics.json")
    assert s3["Plots"].endswith(f"v1/{PLOTS[0]}") and s3["Per-class plot"].endswith(f"v1/{PLOTS[2]}")
    # A local store: same-origin pages of the API server (the UI shows no file:// link).
    local = store_links("file:///srv/store/models/fashion-mnist/v1", "us-west-2")
    assert local == {
        "Model version": "/eksml/models/v1/",
        "Metrics": "/eksml/models/v1/metrics.json",
        "Plots": "/eksml/models/v1/training_curves.png",
        "Per-class plot": "/eksml/models/v1/per_class_accuracy.png",
    }


def test_version_pages_serve_metrics_and_plots_but_never_the_model(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from eksml.plugin import EksmlPlugin

    monkeypatch.setenv("EKSML_STORE_URI", (tmp_path / "store").as_uri())
    version = tmp_path / "store" / "models" / "fashion-mnist" / "v1"
    version.mkdir(parents=True)
    (version / "metadata.json").write_text(
        '{"framework": "tensorflow", "run_id": "r1", '
        '"metrics": {"test_accuracy": 0.9123}, "files": ["training_curves.png"]}'
    )
    (version / "metrics.json").write_text('{"test_accuracy": 0.9123}')
    (version / "training_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (version / "model.keras").write_bytes(b"weights")
    (app_entry,) = EksmlPlugin.fastapi_apps
    client = TestClient(app_entry["app"])
    page = client.get("/models/v1/")
    assert page.status_code == 200 and "0.9123" in page.text and '<img src="training_curves.png"' in page.text
    assert client.get("/models/v1/metrics.json").json() == {"test_accuracy": 0.9123}
    assert client.get("/models/v1/training_curves.png").headers["content-type"] == "image/png"
    assert client.get("/models/v1/model.keras").status_code == 404
    assert client.get("/models/v2/").status_code == 404
    assert client.get("/models/..%2F..%2Fetc/metrics.json").status_code == 404
    assert app_entry["url_prefix"] == "/eksml"


def test_champion_event_carries_version_and_accuracy():
    pointer = {
        "version": "v1",
        "uri": "s3://b/m/v1",
        "entry": "promotions/20261123T030000000000Z-v1-0a1b2c3d.json",
        "test_accuracy": 0.91,
        "framework": "tensorflow",
        "previous": "v0",
        "run_id": "manual__x",
        "promoted_at": "now",
        "reason": "gate",
    }
    assert champion_event_extra(pointer) == {
        "version": "v1",
        "entry": "promotions/20261123T030000000000Z-v1-0a1b2c3d.json",
        "test_accuracy": 0.91,
        "framework": "tensorflow",
        "previous": "v0",
        "run_id": "manual__x",
    }


def test_outcome_operator_links_are_serialised_for_the_ui():
    """The UI reads the links the worker stored: the operator declares them by name."""
    from eksml.outcome import RunOutcomeOperator

    names = {link.name for link in RunOutcomeOperator.operator_extra_links}
    assert names == {"Model version", "Metrics", "Plots", "Per-class plot"}
