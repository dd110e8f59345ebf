"""Real clients, unmodified, against the running model server on real test images.

NVIDIA's ``tritonclient.http`` (an Open Inference Protocol client) in JSON and binary modes,
TensorFlow Serving REST requests as its documentation writes them (row and columnar formats,
model status and metadata), and ``curl`` with ``application/json; charset=utf-8``. Every
answer must equal, bit for bit, the probabilities of the server's backend called in-process
on the same batch, and the classes of the model called in its own training image.
"""

from __future__ import annotations

import json
import subprocess

import inference_models as im
import numpy as np
import pytest
from inference_models import call

pytestmark = pytest.mark.slow
NAME = "fashion-mnist"
COUNT = 32
FRAMEWORKS = ["tensorflow", "mxnet"]


@pytest.fixture(scope="module")
def expected(versions) -> dict[str, dict]:
    return {
        framework: {
            "probabilities": np.asarray(im.in_process_probabilities(versions[framework], COUNT), dtype=np.float32),
            "classes": im.in_process_classes(framework, versions[framework], COUNT),
        }
        for framework in FRAMEWORKS
    }


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    pixels, _ = im.real_test_images(COUNT)
    return np.asarray(pixels, dtype=np.uint8)


def _same(probabilities, want: dict) -> None:
    got = np.asarray(probabilities, dtype=np.float32)
    assert got.shape == want["probabilities"].shape
    assert np.array_equal(got, want["probabilities"]), np.abs(got - want["probabilities"]).max()
    assert got.argmax(axis=1).tolist() == want["classes"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient(framework, binary, servers, versions, expected, images):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{servers[framework]}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    metadata = client.get_model_metadata(NAME)
    assert metadata["name"] == NAME and metadata["versions"] == [versions[framework].name]
    pixels = triton.InferInput("pixels", list(images.shape), "UINT8")
    pixels.set_data_from_numpy(images, binary_data=binary)
    if binary:  # the client's default: no outputs named, all returned as binary tensor data
        result = client.infer(NAME, [pixels])
    else:
        result = client.infer(
            NAME,
            [pixels],
            outputs=[
                triton.InferRequestedOutput(name, binary_data=False) for name in ("class", "label", "probabilities")
            ],
        )
        assert all("data" in output for output in result.get_response()["outputs"])
    _same(result.as_numpy("probabilities"), expected[framework])
    assert result.as_numpy("class").tolist() == expected[framework]["classes"]
    names = json.loads((versions[framework] / "metrics.json").read_text())["class_names"]
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    assert labels == [names[c] for c in expected[framework]["classes"]]
    # The versioned path and a FP32 input work too.
    floats = triton.InferInput("pixels", list(images.shape), "FP32")
    floats.set_data_from_numpy(images.astype(np.float32), binary_data=binary)
    again = client.infer(
        NAME,
        [floats],
        model_version=versions[framework].name,
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary)],
    )
    _same(again.as_numpy("probabilities"), expected[framework])
    assert again.as_numpy("class") is None  # only what was asked for


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tf_serving_rest_row_and_columnar_formats(framework, servers, versions, expected, images):
    port, version = servers[framework], versions[framework].name
    pixels = images.tolist()
    status, row = call(
        port, "POST", f"/v1/models/{NAME}:predict", {"signature_name": "serving_default", "instances": pixels}
    )
    assert status == 200, row
    _same([p["probabilities"] for p in row["predictions"]], expected[framework])
    status, named_rows = call(
        port,
        "POST",
        f"/v1/models/{NAME}/versions/{version}:predict",
        {"instances": [{"pixels": image} for image in pixels]},
    )
    assert status == 200 and named_rows["predictions"] == row["predictions"]
    for inputs in (pixels, {"pixels": pixels}):
        status, columnar = call(port, "POST", f"/v1/models/{NAME}:predict", {"inputs": inputs})
        assert status == 200, columnar
        _same(columnar["outputs"]["probabilities"], expected[framework])
        assert columnar["outputs"]["class"] == expected[framework]["classes"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_tf_serving_model_status_and_metadata(framework, servers, versions):
    port, version = servers[framework], versions[framework].name
    for path in (f"/v1/models/{NAME}", f"/v1/models/{NAME}/versions/{version}"):
        status, answer = call(port, "GET", path)
        assert status == 200, answer
        assert answer["model_version_status"] == [
            {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    status, metadata = call(port, "GET", f"/v1/models/{NAME}/metadata")
    assert status == 200, metadata
    assert metadata["model_spec"]["name"] == NAME and metadata["model_spec"]["version"] == version
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert [d["size"] for d in signature["inputs"]["pixels"]["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    assert set(signature["outputs"]) == {"class", "label", "probabilities"}
    assert call(port, "GET", f"/v1/models/{NAME}/versions/other/metadata")[0] == 404


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_curl_with_a_charset_in_the_content_type(framework, servers, expected, images):
    body = json.dumps({"instances": images.tolist()})
    proc = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json; charset=utf-8",
            "--data-binary",
            "@-",
            f"http://127.0.0.1:{servers[framework]}/v1/models/{NAME}:predict",
        ],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
    )
    answer, code = proc.stdout.rsplit("\n", 1)
    assert code == "200", answer
    _same([p["probabilities"] for p in json.loads(answer)["predictions"]], expected[framework])
