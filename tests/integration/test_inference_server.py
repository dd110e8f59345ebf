"""The inference image on real exports: the KServe server (V1, V2, errors, batching, metrics)
and the evaluation step, each run as the process the pod would run."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import inference_models as im

pytestmark = pytest.mark.slow
NAME = "fashion-mnist"


def _need(*images: str) -> None:
    missing = im.missing_venvs(*images)
    if missing:
        pytest.skip(f"virtualenv(s) missing: {', '.join(missing)} (bash scripts/setup.sh)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body=None) -> tuple[int, object]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Path]:
    _need("inference", "tf-fashion-mnist", "mxnet-horovod")
    return {"tensorflow": im.trained_model("tensorflow"), "mxnet": im.trained_model("mxnet")}


@pytest.fixture(scope="module")
def servers(versions, tmp_path_factory):
    """One server per framework; the ONNX one waits up to 50 ms to group requests."""
    logs = tmp_path_factory.mktemp("server-logs")
    ports, procs = {}, {}
    try:
        for framework, extra in (("tensorflow", ()), ("mxnet", ("--max-latency-ms", "50"))):
            ports[framework] = _free_port()
            procs[framework] = im.start_server(versions[framework], ports[framework], *extra,
                                               log_path=logs / f"{framework}.log")
        yield ports
    finally:
        for proc in procs.values():
            im.stop_server(proc)


@pytest.mark.parametrize("framework", ["tensorflow", "mxnet"])
def test_v1_and_v2_give_the_in_process_classes(framework, versions, servers):
    images, labels = im.real_test_images(64)
    expected = im.in_process_classes(framework, versions[framework], 64)
    port = servers[framework]

    status, v1 = call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": images})
    assert status == 200, v1
    assert [p["class"] for p in v1["predictions"]] == expected
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in v1["predictions"])
    assert v1["predictions"][0]["label"] == json.loads((versions[framework] / "metrics.json").read_text())[
        "class_names"][expected[0]]
    assert v1["model_version"] == versions[framework].name

    flat = [v for image in images for row in image for v in row]
    status, v2 = call(port, "POST", f"/v2/models/{NAME}/infer",
                      {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [64, 28, 28], "data": flat}]})
    assert status == 200, v2
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["class"]["data"] == expected
    assert outputs["probabilities"]["shape"] == [64, 10]
    assert sum(int(c == y) for c, y in zip(expected, labels)) / 64 > 0.6  # a trained model, not noise


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/v1/models/{name}:predict", {"instances": [[1, 2, 3]]}, 400, "28x28"),
    ("/v1/models/{name}:predict", {"instances": [[["a"] * 28] * 28]}, 400, "must be numbers, got strings"),
    ("/v1/models/{name}:predict", {"instances": [[[True] * 28] * 28]}, 400, "got booleans"),
    ("/v1/models/{name}:predict", {"instances": [[[300] * 28] * 28]}, 400, "0..255"),
    ("/v1/models/{name}:predict", {"instances": []}, 400, "empty"),
    ("/v1/models/{name}:predict", {"inputs": []}, 400, 'no "instances"'),
    ("/v1/models/{name}:predict", b"", 400, "empty document"),
    ("/v1/models/{name}:predict", {"instances": [[[0] * 28] * 28] * 65}, 413, "at most 64"),
    ("/v2/models/{name}/infer", {"inputs": [{"name": "pixels", "datatype": "BYTES", "shape": [1, 28, 28],
                                             "data": ["x"] * 784}]}, 400, "datatype BYTES is not supported"),
    ("/v2/models/{name}/infer", {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784],
                                             "data": [0] * 784}]}, 400, "is not [N, 28, 28]"),
    ("/v2/models/{name}/infer", {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 28, 28],
                                             "data": [0] * 10}]}, 400, "does not match"),
    ("/v2/models/{name}/infer", b"", 422, "Field required"),
    ("/v1/models/other:predict", {"instances": [[[0] * 28] * 28]}, 404, "other"),
])
def test_malformed_requests_get_4xx_and_the_server_keeps_serving(servers, path, body, status, message):
    port = servers["tensorflow"]
    got, answer = call(port, "POST", path.format(name=NAME), body)
    assert got == status, answer
    assert message in str(answer)
    images, _ = im.real_test_images(1)
    got, answer = call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": images})
    assert got == 200 and len(answer["predictions"]) == 1


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_concurrent_requests_share_model_calls(servers):
    port = servers["mxnet"]
    images, _ = im.real_test_images(16)
    singles = [call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": [image]})[1]["predictions"][0]["class"]
               for image in images]
    before = call(port, "GET", "/metrics")[1]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda image: call(port, "POST", f"/v1/models/{NAME}:predict",
                                                   {"instances": [image]}), images))
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
    assert call(port, "GET", f"/v1/models/{NAME}") == (200, {"name": NAME, "ready": True})
    status, meta = call(port, "GET", f"/v2/models/{NAME}")
    assert status == 200 and meta["inputs"][0]["shape"] == [-1, 28, 28]
    metrics = call(port, "GET", "/metrics")[1]
    assert f'eksml_model_info{{framework="mxnet",model="{NAME}",version="{versions["mxnet"].name}"}} 1.0' in metrics
    assert "request_predict_seconds" in metrics  # KServe's own latency histograms


def test_a_corrupt_version_exits_with_the_reason(versions, tmp_path):
    broken = im.corrupt(im.copy_version(versions["mxnet"], tmp_path / "broken"), "truncate")
    with pytest.raises(RuntimeError, match=r"exited with 2[\s\S]*cannot load model.onnx"):
        im.start_server(broken, _free_port(), log_path=tmp_path / "server.log")


def test_sigterm_stops_the_server_cleanly(versions, tmp_path):
    proc = im.start_server(versions["mxnet"], _free_port(), log_path=tmp_path / "server.log")
    assert im.stop_server(proc) == 0


def test_evaluate_scores_candidate_and_champion_on_the_same_images(versions, tmp_path):
    candidate = im.copy_version(versions["mxnet"], tmp_path / "candidate")
    proc = subprocess.run(
        [str(im.INFERENCE_PYTHON), "evaluate.py", "--candidate-uri", str(candidate),
         "--champion-uri", f"file://{versions['tensorflow']}", "--data-uri", im.DATASET,
         "--out-uri", str(candidate), "--limit-test", "500"],
        cwd=im.ROOT / "images" / "inference", capture_output=True, text=True, timeout=900,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(im.ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluation = json.loads((candidate / "evaluation.json").read_text())
    for role, version in (("candidate", versions["mxnet"]), ("champion", versions["tensorflow"])):
        scored = evaluation[role]
        assert scored["test_images"] == 500
        assert sum(map(sum, scored["confusion_matrix"])) == 500
        # Same 500 images as training's own test: the served runtime reproduces its accuracy.
        training = json.loads((version / "metrics.json").read_text())["test_accuracy"]
        assert abs(scored["test_accuracy"] - training) < 0.01, (role, scored["test_accuracy"], training)
    assert evaluation["accuracy_delta"] == pytest.approx(
        evaluation["candidate"]["test_accuracy"] - evaluation["champion"]["test_accuracy"])
    for plot in ("training_curves.png", "confusion_matrix.png", "per_class_accuracy.png"):
        assert (candidate / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert evaluation["plots"] == ["training_curves.png", "confusion_matrix.png", "per_class_accuracy.png"]


def test_evaluate_refuses_bad_input_before_loading_models(versions, tmp_path):
    proc = subprocess.run(
        [str(im.INFERENCE_PYTHON), "evaluate.py", "--candidate-uri", str(tmp_path / "nothing"),
         "--data-uri", im.DATASET, "--out-uri", str(tmp_path / "out")],
        cwd=im.ROOT / "images" / "inference", capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(im.ROOT / "images" / "common")})
    assert proc.returncode == 2
    assert "no metrics.json" in proc.stderr
    assert not (tmp_path / "out").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_version_in_s3_is_served_through_the_endpoint_url(versions, moto_server, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-west-2",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for path in versions["mxnet"].rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "models", f"fashion-mnist/v-s3/{path.relative_to(versions['mxnet'])}")
    port = _free_port()
    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-west-2"}
    proc = im.start_server("s3://models/fashion-mnist/v-s3", port, log_path=tmp_path / "server.log", env=env)
    try:
        images, _ = im.real_test_images(16)
        status, answer = call(port, "POST", f"/v1/models/{NAME}:predict", {"instances": images})
        assert status == 200 and answer["model_version"] == "v-s3"
        assert [p["class"] for p in answer["predictions"]] == im.in_process_classes("mxnet", versions["mxnet"], 16)
    finally:
        im.stop_server(proc)
