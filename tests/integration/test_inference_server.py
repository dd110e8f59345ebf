"""The inference image on real exports: the model server (V1, V2, errors, batching, metrics,
what it refuses) and the evaluation step, each run as the process the pod would run."""

from __future__ import annotations

import concurrent.futures
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import inference_models as im
import pytest
from inference_models import call

pytestmark = pytest.mark.slow
NAME = "fashion-mnist"
_free_port = im.free_port


@pytest.mark.parametrize("framework", ["tensorflow", "mxnet"])
def test_v1_and_v2_give_the_in_process_classes(framework, versions, servers):
    images, labels = im.real_test_images(64)
    expected = im.in_process_classes(framework, versions[framework], 64)
    port = servers[framework]

    status, v1 = call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": images})
    assert status == 200, v1
    assert [p["class"] for p in v1["predictions"]] == expected
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in v1["predictions"])
    assert (
        v1["predictions"][0]["label"]
        == json.loads((versions[framework] / "metrics.json").read_text())["class_names"][expected[0]]
    )
    assert v1["model_version"] == versions[framework].name

    flat = [v for image in images for row in image for v in row]
    status, v2 = call(
        port,
        "POST",
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [64, 28, 28], "data": flat}]},
    )
    assert status == 200, v2
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["class"]["data"] == expected
    assert outputs["probabilities"]["shape"] == [64, 10]
    assert sum(int(c == y) for c, y in zip(expected, labels, strict=True)) / 64 > 0.6  # a trained model, not noise


def _v2(datatype="FP32", shape=(1, 28, 28), data=None, **extra) -> dict:
    data = [0] * math.prod(shape) if data is None else data
    return {"inputs": [{"name": "pixels", "datatype": datatype, "shape": list(shape), "data": data}], **extra}


V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"
IMAGE = [[0] * 28] * 28


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", V1, {"instances": [[1, 2, 3]]}, 400, "28x28"),
        ("POST", V1, {"instances": [[["a"] * 28] * 28]}, 400, "must be numbers, got strings"),
        ("POST", V1, {"instances": [[[True] * 28] * 28]}, 400, "got booleans"),
        ("POST", V1, {"instances": [[[300] * 28] * 28]}, 400, "0..255"),
        ("POST", V1, {"instances": []}, 400, "empty"),
        ("POST", V1, {"other": []}, 400, 'no "instances" or "inputs"'),
        ("POST", V1, {"instances": [IMAGE], "inputs": [IMAGE]}, 400, "not both"),
        ("POST", V1, {"signature_name": "other", "instances": [IMAGE]}, 400, "signature_name 'other'"),
        ("POST", V1, b"", 400, "not valid JSON"),
        ("POST", V1, b"{bad json", 400, "not valid JSON"),
        ("POST", V1, {"instances": [IMAGE] * 65}, 413, "at most 64"),
        ("POST", V2, _v2("BYTES", data=["x"] * 784), 400, "datatype BYTES is not supported"),
        ("POST", V2, _v2(shape=(1, 784)), 400, "is not [N, 28, 28]"),
        ("POST", V2, _v2(data=[0] * 10), 400, "10 values for 784 elements"),
        # Open Inference Protocol errors are {"error": ...} with 400, not 422 {"detail": ...}.
        ("POST", V2, b"", 400, "not valid JSON"),
        ("POST", V2, b"{bad json", 400, "not valid JSON"),
        ("POST", V2, {"id": "1"}, 400, 'no "inputs"'),
        # Integers out of range for their datatype: 400 with the value, not 500 with a traceback.
        ("POST", V2, _v2("UINT8", data=[300] * 784), 400, "value 300 is out of range for UINT8"),
        ("POST", V2, _v2("UINT8", data=[-1] * 784), 400, "value -1 is out of range for UINT8"),
        ("POST", V2, _v2("INT32", data=[2**40] * 784), 400, f"value {2**40} is out of range for INT32"),
        ("POST", V2, _v2("INT64", data=[2**70] * 784), 400, "is out of range for INT64"),
        ("POST", V2, _v2(shape=(-1, 28, 28)), 400, "negative dimension"),
        ("POST", V2, _v2(outputs=[{"name": "logits"}]), 400, "unknown output 'logits'"),
        ("POST", V2, _v2(shape=(65, 28, 28)), 413, "at most 64"),
        ("GET", V1, None, 405, "use POST"),
        ("GET", V2, None, 405, "use POST"),
        ("POST", "/v1/models/other:predict", {"instances": [IMAGE]}, 404, "'other' is not served"),
        ("POST", f"/v2/models/{NAME}/versions/nope/infer", _v2(), 404, "version 'nope'"),
        ("GET", "/v2/models/other", None, 404, "'other' is not served"),
    ],
)
def test_bad_requests_get_a_4xx_in_the_protocol_error_shape_and_the_server_keeps_serving(
    servers, method, path, body, status, message
):
    port = servers["tensorflow"]
    got, answer = call(port, method, path, body)
    assert got == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    assert message in answer["error"] and "\n" not in answer["error"]
    images, _ = im.real_test_images(1)
    got, answer = call(port, "POST", V1, {"instances": images})
    assert got == 200 and len(answer["predictions"]) == 1


def test_405_names_the_allowed_method(servers):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{servers['tensorflow']}{V1}", timeout=30)
    assert refused.value.code == 405 and refused.value.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/v2/repository/models/{NAME}/unload"),
        ("POST", f"/v2/repository/models/{NAME}/load"),
        ("POST", "/v2/repository/index"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
    ],
)
def test_control_endpoints_are_off_and_the_model_keeps_serving(servers, method, path):
    port = servers["mxnet"]
    status, answer = call(port, method, path, {} if method == "POST" else None)
    assert status == 404, answer
    assert call(port, "GET", "/v2/health/live") == (200, {"live": True})
    images, _ = im.real_test_images(2)
    status, answer = call(port, "POST", V1, {"instances": images})
    assert status == 200 and len(answer["predictions"]) == 2


def _no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(v is not None and _no_nulls(v) for v in value)
    return True


def test_v2_answers_carry_no_nulls_and_honour_requested_outputs(servers, versions):
    port = servers["tensorflow"]
    for path in ("/v2", f"/v2/models/{NAME}", f"/v2/models/{NAME}/ready"):
        status, answer = call(port, "GET", path)
        assert status == 200 and _no_nulls(answer), (path, answer)
    assert call(port, "GET", f"/v2/models/{NAME}")[1]["versions"] == [versions["tensorflow"].name]
    images, _ = im.real_test_images(3)
    flat = [v for image in images for row in image for v in row]
    full = call(port, "POST", V2, _v2("UINT8", (3, 28, 28), flat, id="req-7"))[1]
    assert _no_nulls(full) and full["id"] == "req-7"
    assert [o["name"] for o in full["outputs"]] == ["class", "label", "probabilities"]
    status, subset = call(
        port, "POST", V2, _v2("UINT8", (3, 28, 28), flat, outputs=[{"name": "probabilities"}, {"name": "class"}])
    )
    assert status == 200 and _no_nulls(subset) and "id" not in subset
    assert [o["name"] for o in subset["outputs"]] == ["probabilities", "class"]
    by_name = {o["name"]: o for o in full["outputs"]}
    assert subset["outputs"][0]["data"] == by_name["probabilities"]["data"]
    assert subset["outputs"][1]["data"] == by_name["class"]["data"]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_concurrent_requests_share_model_calls(servers):
    port = servers["mxnet"]
    images, _ = im.real_test_images(16)
    singles = [
        call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": [image]})[1]["predictions"][0]["class"]
        for image in images
    ]
    before = call(port, "GET", "/metrics")[1]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda image: call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": [image]}), images)
        )
    after = call(port, "GET", "/metrics")[1]
    assert [a[1]["predictions"][0]["class"] for a in answers] == singles
    requests = _metric(after, "eksml_batch_requests_sum") - _metric(before, "eksml_batch_requests_sum")
    calls = _metric(after, "eksml_batch_requests_count") - _metric(before, "eksml_batch_requests_count")
    assert requests == 16
    assert calls < 16, f"16 concurrent requests took {calls} model calls: no batching"


def test_health_metadata_and_prometheus_metrics(servers, versions):
    port = servers["mxnet"]
    assert call(port, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(port, "GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = call(port, "GET", f"/v2/models/{NAME}")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 28, 28]
    assert meta["platform"] == "onnxruntime_onnx"
    metrics = call(port, "GET", "/metrics")[1]
    assert f'eksml_model_info{{framework="mxnet",model="{NAME}",version="{versions["mxnet"].name}"}} 1.0' in metrics


def _count(metrics: str, route: str, method: str, code: int) -> float:
    match = re.search(
        rf'^eksml_http_requests_total{{code="{code}",method="{method}",route="{re.escape(route)}"}} '
        r"([0-9.e+]+)$",
        metrics,
        re.M,
    )
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_by_route_and_status_code_with_a_latency_histogram(servers):
    port = servers["tensorflow"]
    route = "/v2/models/{name}/infer"
    before = call(port, "GET", "/metrics")[1]
    for _ in range(3):
        assert call(port, "POST", V2, _v2())[0] == 200
    for _ in range(2):
        assert call(port, "POST", V2, _v2("UINT8", data=[300] * 784))[0] == 400
    assert call(port, "GET", V2)[0] == 405
    after = call(port, "GET", "/metrics")[1]
    assert _count(after, route, "POST", 200) - _count(before, route, "POST", 200) == 3
    assert _count(after, route, "POST", 400) - _count(before, route, "POST", 400) == 2
    assert _count(after, route, "GET", 405) - _count(before, route, "GET", 405) == 1
    buckets = re.findall(
        rf'^eksml_http_request_duration_seconds_bucket{{le="([^"]+)",route="{re.escape(route)}"}} ', after, re.M
    )
    assert len(buckets) > 5 and buckets[-1] == "+Inf"
    assert _metric(after, f'eksml_http_request_duration_seconds_count{{route="{route}"}}') >= 6


def test_4xx_is_logged_at_info_in_one_line_without_a_traceback(servers, server_logs):
    port = servers["tensorflow"]
    for body in (_v2("UINT8", data=[300] * 784), _v2("INT64", data=[2**70] * 784), b"{bad json", {"id": "x"}):
        assert 400 <= call(port, "POST", V2, body)[0] < 500
    assert call(port, "POST", f"/v2/repository/models/{NAME}/unload", {})[0] == 404
    log = server_logs["tensorflow"].read_text()
    assert "Traceback" not in log
    refusals = [line for line in log.splitlines() if " -> 4" in line]
    assert any("out of range for UINT8" in line for line in refusals), log[-3000:]
    assert refusals and all(" INFO " in line and " ERROR " not in line for line in refusals)


#: An ASGI GET against the application object itself, for scripts run in the inference virtualenv.
_ASGI_GET = """
import asyncio, json

async def get(app, path):
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])
"""


def _run_asgi_script(script: str, *args: str) -> object:
    """``script`` (after :data:`_ASGI_GET`) in the inference virtualenv; the JSON of its last line."""
    proc = subprocess.run(
        [str(im.INFERENCE_PYTHON), "-c", _ASGI_GET + script, *args],
        cwd=im.ROOT / "images" / "inference",
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(im.ROOT / "images" / "common")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_liveness_fails_when_no_model_is_loaded():
    """The application object itself, called in the inference virtualenv with a model never loaded."""
    script = """
from eksml_inference.app import InferenceApp
from eksml_inference.predictor import FashionMnistModel

app = InferenceApp(FashionMnistModel("fashion-mnist", "/nowhere"))
print(json.dumps([asyncio.run(get(app, p)) for p in ("/v2/health/live", "/v2/health/ready")]))
"""
    assert _run_asgi_script(script) == [
        [503, {"live": False, "reason": "no model loaded"}],
        [503, {"ready": False}],
    ]


def test_liveness_fails_while_a_model_call_is_stuck_and_recovers_after(versions):
    """A loaded model whose worker thread is held: predicts cannot be answered, so liveness says so."""
    script = """
import sys, threading
import numpy as np
from eksml_inference.app import InferenceApp
from eksml_inference.limits import Limits
from eksml_inference.predictor import FashionMnistModel

async def main():
    model = FashionMnistModel("fashion-mnist", sys.argv[1])
    model.load()
    app = InferenceApp(model, Limits(stall_s=0.2))
    async def live():
        status, body = await get(app, "/v2/health/live")
        return status, body["live"]

    seen = [await live()]
    held = threading.Event()
    model.batcher._executor.submit(held.wait, 60)  # the model's one worker thread, held
    pending = asyncio.ensure_future(model.predict(np.zeros((1, 28, 28), np.float32)))
    await asyncio.sleep(0.5)
    seen.append(await live())
    held.set()
    await asyncio.wait_for(pending, 60)
    seen.append(await live())
    print(json.dumps(seen))

asyncio.run(main())
"""
    assert _run_asgi_script(script, str(versions["mxnet"])) == [[200, True], [503, False], [200, True]]


def test_a_corrupt_version_exits_with_the_reason(versions, tmp_path):
    broken = im.corrupt(im.copy_version(versions["mxnet"], tmp_path / "broken"), "truncate")
    with pytest.raises(RuntimeError, match=r"exited with 2[\s\S]*cannot load model.onnx"):
        im.start_server(broken, _free_port(), log_path=tmp_path / "server.log")


def test_sigterm_stops_the_server_cleanly(versions, tmp_path):
    proc = im.start_server(versions["mxnet"], _free_port(), log_path=tmp_path / "server.log")
    assert im.stop_server(proc) == 0


def _evaluate(candidate: Path, champion: Path | str, limit_test: int) -> dict:
    """evaluate.py as the evaluation pod runs it; the evaluation.json it wrote into ``candidate``."""
    proc = subprocess.run(
        [str(im.INFERENCE_PYTHON), "evaluate.py", "--candidate-uri", str(candidate), "--champion-uri", str(champion)]
        + ["--data-uri", im.DATASET, "--out-uri", str(candidate), "--limit-test", str(limit_test)],
        cwd=im.ROOT / "images" / "inference",
        capture_output=True,
        text=True,
        timeout=900,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(im.ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((candidate / "evaluation.json").read_text())


def test_evaluate_scores_candidate_and_champion_on_the_same_images(versions, tmp_path):
    candidate = im.copy_version(versions["mxnet"], tmp_path / "candidate")
    evaluation = _evaluate(candidate, f"file://{versions['tensorflow']}", limit_test=500)
    for role, version in (("candidate", versions["mxnet"]), ("champion", versions["tensorflow"])):
        scored = evaluation[role]
        assert scored["test_images"] == 500
        assert sum(map(sum, scored["confusion_matrix"])) == 500
        # Same 500 images as training's own test: the served runtime reproduces its accuracy.
        training = json.loads((version / "metrics.json").read_text())["test_accuracy"]
        assert abs(scored["test_accuracy"] - training) < 0.01, (role, scored["test_accuracy"], training)
    assert evaluation["accuracy_delta"] == pytest.approx(
        evaluation["candidate"]["test_accuracy"] - evaluation["champion"]["test_accuracy"]
    )
    for plot in ("training_curves.png", "confusion_matrix.png", "per_class_accuracy.png"):
        assert (candidate / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert evaluation["plots"] == ["training_curves.png", "confusion_matrix.png", "per_class_accuracy.png"]


def test_a_champion_keeps_the_scores_its_own_evaluation_recorded_on_the_same_images(versions, tmp_path):
    """A registered version never changes, so its scores on the same test images (by SHA-256) are
    reused; other images, or an evaluation.json of another version, get it scored again."""
    champion = im.copy_version(versions["tensorflow"], tmp_path / "champion")
    first = _evaluate(champion, versions["mxnet"], limit_test=300)  # the champion's own evaluation
    assert first["champion"].get("scored_at") is None  # nothing recorded for the mxnet version: scored
    recorded = json.loads((champion / "evaluation.json").read_text())
    recorded["candidate"]["test_accuracy"] = 0.123  # a mark that only the recorded figure carries
    (champion / "evaluation.json").write_text(json.dumps(recorded))

    candidate = im.copy_version(versions["mxnet"], tmp_path / "candidate")
    same = _evaluate(candidate, champion, limit_test=300)
    assert same["champion"]["test_accuracy"] == 0.123
    assert same["champion"]["scored_at"] == recorded["evaluated_at"]
    assert same["champion"]["uri"] == str(champion)
    assert same["test_data_sha256"] == recorded["test_data_sha256"]

    other_images = _evaluate(im.copy_version(versions["mxnet"], tmp_path / "c2"), champion, limit_test=200)
    assert other_images["champion"]["test_accuracy"] > 0.5 and "scored_at" not in other_images["champion"]

    renamed = shutil.copytree(champion, tmp_path / "renamed")  # its evaluation.json names "champion"
    moved = _evaluate(im.copy_version(versions["mxnet"], tmp_path / "c3"), renamed, limit_test=300)
    assert moved["champion"]["test_accuracy"] > 0.5 and "scored_at" not in moved["champion"]


def test_evaluate_refuses_bad_input_before_loading_models(versions, tmp_path):
    proc = subprocess.run(
        [
            str(im.INFERENCE_PYTHON),
            "evaluate.py",
            "--candidate-uri",
            str(tmp_path / "nothing"),
            "--data-uri",
            im.DATASET,
            "--out-uri",
            str(tmp_path / "out"),
        ],
        cwd=im.ROOT / "images" / "inference",
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(im.ROOT / "images" / "common")},
    )
    assert proc.returncode == 2
    assert "no metrics.json" in proc.stderr
    assert not (tmp_path / "out").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_version_in_s3_is_served_through_the_endpoint_url(versions, moto_env, moto_client, moto_bucket, tmp_path):
    s3 = moto_client("s3")
    moto_bucket("models")
    for path in versions["mxnet"].rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "models", f"fashion-mnist/v-s3/{path.relative_to(versions['mxnet'])}")
    port = _free_port()
    proc = im.start_server("s3://models/fashion-mnist/v-s3", port, log_path=tmp_path / "server.log", env=moto_env)
    try:
        images, _ = im.real_test_images(16)
        status, answer = call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": images})
        assert status == 200 and answer["model_version"] == "v-s3"
        assert [p["class"] for p in answer["predictions"]] == im.in_process_classes("mxnet", versions["mxnet"], 16)
    finally:
        im.stop_server(proc)
