"""Real model versions for the serving tests and the latency benchmark.

Each model is trained by its image's own entrypoint (``images/<image>/train.py``) in that
image's virtualenv on a slice of the real Fashion-MNIST data, so the server is tested on the
exports the pipeline produces. Trained versions are kept under ``.local/test-models/<key>``,
where the key hashes the training code and arguments: later runs reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATASET = "/usr/share/datasets/fashion-mnist"
CACHE = ROOT / ".local" / "test-models"
INFERENCE_PYTHON = ROOT / ".venvs" / "inference" / "bin" / "python"

#: image folder, extra training arguments. Small enough for a minute of CPU, good enough (~0.8).
TRAINING = {
    "tensorflow": ("tf-fashion-mnist", ["--epochs", "2", "--limit-train", "2000", "--batch-size", "32"]),
    "mxnet": ("mxnet-horovod", ["--epochs", "2", "--limit-train", "4000", "--batch-size", "64"]),
}


def venv_python(image: str) -> Path:
    return ROOT / ".venvs" / image / "bin" / "python"


def missing_venvs(*images: str) -> list[str]:
    return [image for image in images if not venv_python(image).exists()]


def server_code_json(script: str, stdin: str | None = None) -> Any:
    """What ``script`` prints as JSON, run in the inference virtualenv with the server's packages
    (images/inference, images/common) first on ``sys.path`` as ``sys.argv[1:3]``; skips the test
    when that virtualenv is missing."""
    import pytest

    if missing_venvs("inference"):
        pytest.skip("virtualenv missing: inference (bash scripts/setup.sh)")
    paths = [str(ROOT / "images" / "inference"), str(ROOT / "images" / "common")]
    proc = subprocess.run(
        [str(INFERENCE_PYTHON), "-c", script, *paths],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def _key(image: str, args: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(args).encode())
    for folder in (ROOT / "images" / image, ROOT / "images" / "common" / "trainkit"):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def trained_model(framework: str) -> Path:
    """A model version folder trained by the real ``train.py`` of ``framework``'s image."""
    image, extra = TRAINING[framework]
    args = ["--data-uri", DATASET, "--limit-test", "500", *extra]
    target = CACHE / f"{framework}-{_key(image, args)}"
    if (target / "metrics.json").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "images" / "common"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "2",
    }
    proc = subprocess.run(
        [str(venv_python(image)), "train.py", *args, "--model-uri", str(partial)],
        cwd=ROOT / "images" / image,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"training {framework} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def copy_version(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def corrupt(version: Path, how: str = "garble") -> Path:
    """Damage the model's weights file: ``garble`` overwrites its middle half with random bytes
    (a bad disk or copy), ``truncate`` cuts it in half (an interrupted upload)."""
    files = (
        [version / "model.onnx"]
        if (version / "model.onnx").exists()
        else sorted((version / "saved_model" / "variables").glob("variables.data-*"))
    )
    for path in files:
        data = bytearray(path.read_bytes())
        if how == "truncate":
            data = data[: len(data) // 2]
        else:
            quarter = len(data) // 4
            data[quarter : 3 * quarter] = os.urandom(2 * quarter)
        path.write_bytes(bytes(data))
    return version


_SCRAMBLE = """
import sys, numpy as np, onnx
from onnx import numpy_helper
model = onnx.load(sys.argv[1])
rng = np.random.default_rng(0)
for tensor in model.graph.initializer:
    values = numpy_helper.to_array(tensor)
    if values.size > 100:
        tensor.CopyFrom(numpy_helper.from_array(rng.permutation(values.ravel()).reshape(values.shape), tensor.name))
onnx.save(model, sys.argv[1])
"""


def scramble_weights(version: Path) -> Path:
    """Shuffle the values inside each ONNX weight tensor: the file loads and runs, every answer is wrong."""
    subprocess.run([str(INFERENCE_PYTHON), "-c", _SCRAMBLE, str(version / "model.onnx")], check=True, timeout=300)
    return version


def real_test_images(count: int, offset: int = 0) -> tuple[list, list[int]]:
    """Real test images (nested lists of 0..255) and labels, read with the standard library."""
    from eksml.serving.smoke import parse_idx

    images = parse_idx(Path(DATASET, "t10k-images-idx3-ubyte.gz").read_bytes(), 3, offset + count, "images")
    labels = parse_idx(Path(DATASET, "t10k-labels-idx1-ubyte.gz").read_bytes(), 1, offset + count, "labels")
    return images[offset:], labels[offset:]


_IN_PROCESS = {
    # The training image's own SavedModel call (its export contract), not the server's backend.
    "tensorflow": """
import sys, json, numpy as np
sys.path.insert(0, '.')
from trainkit.data import load_fashion_mnist
from exporting import saved_model_predict
_, _, x, _ = load_fashion_mnist(sys.argv[2], 1, int(sys.argv[3]))
print(json.dumps(saved_model_predict(sys.argv[1] + '/saved_model', x).argmax(axis=1).tolist()))
""",
    # MXNet itself on the symbol + params export: independent of the ONNX file the server runs.
    "mxnet": """
import sys, json, mxnet as mx
sys.path.insert(0, '.')
from trainkit.data import load_fashion_mnist
from network import INPUT_NAME, to_input
_, _, x, _ = load_fashion_mnist(sys.argv[2], 1, int(sys.argv[3]))
net = mx.gluon.SymbolBlock.imports(sys.argv[1] + '/model-symbol.json', [INPUT_NAME], sys.argv[1] + '/model-0000.params')
print(json.dumps(net(mx.nd.array(to_input(x))).argmax(axis=1).asnumpy().astype(int).tolist()))
""",
}


def in_process_classes(framework: str, version: Path, count: int) -> list[int]:
    """Classes the model gives the first ``count`` test images, called in its training image."""
    image = TRAINING[framework][0]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [str(venv_python(image)), "-c", _IN_PROCESS[framework], str(version), DATASET, str(count)],
        cwd=ROOT / "images" / image,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"in-process prediction failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_SAVED_MODEL_ACCURACY = """
import sys, json
import tensorflow as tf
from trainkit.data import load_fashion_mnist
_, _, x, y = load_fashion_mnist(sys.argv[2], limit_train=1, limit_test=int(sys.argv[3]))
fn = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
name = list(fn.structured_input_signature[1])[0]
out = list(fn(**{name: tf.constant(x.astype('float32'))}).values())[0].numpy()
print(json.dumps(float((out.argmax(axis=1) == y).mean())))
"""


def saved_model_accuracy(saved_model: Path, data_dir: Path | str, count: int) -> float:
    """Accuracy of a registered SavedModel on the first ``count`` test images, loaded fresh through
    its serving signature in the TF image's virtualenv (not through the image's export helpers)."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    argv = [str(venv_python("tf-fashion-mnist")), "-c", _SAVED_MODEL_ACCURACY, str(saved_model), str(data_dir)]
    proc = subprocess.run(
        [*argv, str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


_BACKEND = """
import sys, json, numpy as np
from eksml_inference.backends import load_backend
from trainkit.data import load_fashion_mnist
_, _, x, _ = load_fashion_mnist(sys.argv[2], 1, int(sys.argv[3]))
print(json.dumps(load_backend(sys.argv[1]).predict(x.astype(np.float32)).tolist()))
"""


def in_process_probabilities(version: Path, count: int) -> list[list[float]]:
    """Probabilities of the first ``count`` test images from the server's backend called in-process,
    as one batch (float32 values, exact through JSON: float32 -> double -> float32 round-trips)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [str(INFERENCE_PYTHON), "-c", _BACKEND, str(version), DATASET, str(count)],
        cwd=ROOT / "images" / "inference",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"in-process prediction failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(
    port: int, method: str, path: str, body=None, headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, object]:
    """One HTTP request; the answer decoded as JSON when it is JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def start_server(
    version: Path | str, port: int, *extra: str, log_path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """The inference server on 127.0.0.1:port, returned once its model is ready."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "images" / "common"), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [
            str(INFERENCE_PYTHON),
            "serve.py",
            "--model-uri",
            str(version),
            "--host",
            "127.0.0.1",
            "--http-port",
            str(port),
            *extra,
        ],
        cwd=ROOT / "images" / "inference",
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text()[-2000:] if log_path else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server not ready after 300 s")


def request_head(path: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def stop_server(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


if __name__ == "__main__":  # build (or find) the cached versions: python tests/integration/inference_models.py
    sys.path.insert(0, str(ROOT / "plugins"))
    for name in sys.argv[1:] or list(TRAINING):
        print(name, trained_model(name))
