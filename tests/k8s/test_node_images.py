"""Every training and inference image, built from its own Dockerfile, runs its entrypoint.

The images are built by ``tools/k8s-node/build-images.sh`` with buildah (no registry), FROM the
local Debian base through each Dockerfile's ``BASE_IMAGE`` build argument, and each entrypoint
runs in a container (runc, through ``buildah run``) as the image's own user, on a slice of the
real Fashion-MNIST mounted read-only: the TensorFlow image trains and exports, the inference
image scores that export, the MXNet image's worker entrypoint (sshd) accepts its config, and
``horovodrun -np 2`` trains with that image's Horovod over Gloo. The Docker stack's Airflow image
(``docker/Dockerfile``) runs Airflow and eksctl and imports every DAG.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_node import Image, build_images, missing_prerequisites

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("/usr/share/datasets/fashion-mnist")
SLICE = ["--limit-train", "1024", "--limit-test", "512"]


def run_in_container(image: Image, out: Path, *command: str) -> str:
    """``command`` in a fresh container of ``image`` (its user, env and workdir); its output and errors."""
    name = subprocess.run(
        ["buildah", "from", "--pull-never", image.ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        proc = subprocess.run(
            [
                "buildah",
                "run",
                "--isolation",
                "oci",
                "--network",
                "none",
                "-v",
                f"{DATA}:/data:ro",
                "-v",
                f"{out}:/out",
                name,
                "--",
                *command,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)
    assert proc.returncode == 0, (
        f"{' '.join(command)} in {image.ref} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("image-out")
    path.chmod(0o777)  # the images run as uid 1000
    yield path


def test_tf_image_trains_and_exports(node_images: dict[str, Image], out: Path) -> None:
    # `train` is the image's entrypoint on PATH (what SageMaker runs; pods run train.py directly).
    run_in_container(
        node_images["tf-fashion-mnist"],
        out,
        "train",
        "--data-uri",
        "/data",
        "--model-uri",
        "/out/tf-model",
        "--epochs",
        "1",
        *SLICE,
    )
    metrics = json.loads((out / "tf-model" / "metrics.json").read_text())
    assert metrics["framework"] == "tensorflow" and metrics["epochs"] == 1
    assert metrics["train_images"] == 1024 and metrics["test_images"] == 512
    assert metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1
    assert (out / "tf-model" / "saved_model" / "saved_model.pb").is_file()


def test_inference_image_scores_the_tf_export(node_images: dict[str, Image], out: Path) -> None:
    if not (out / "tf-model" / "metrics.json").exists():
        pytest.fail("needs the TensorFlow image's export (test_tf_image_trains_and_exports)")
    run_in_container(
        node_images["inference"],
        out,
        "python",
        "/opt/eksml/evaluate.py",
        "--candidate-uri",
        "/out/tf-model",
        "--data-uri",
        "/data",
        "--out-uri",
        "/out/eval",
        "--limit-test",
        "512",
    )
    evaluation = json.loads((out / "eval" / "evaluation.json").read_text())
    assert evaluation["candidate"]["test_images"] == 512
    assert evaluation["candidate"]["test_accuracy"] > 0.3


def test_mxnet_worker_entrypoint_accepts_its_sshd_config(node_images: dict[str, Image], out: Path) -> None:
    """The MPI worker's entrypoint is sshd with the image's own config, as the non-root user,
    with the key pair the MPI operator mounts at ~/.ssh (made here as the operator would)."""
    log = run_in_container(
        node_images["mxnet-horovod"],
        out,
        "sh",
        "-c",
        'mkdir -p ~/.ssh && ssh-keygen -q -t rsa -N "" -f ~/.ssh/id_rsa && cp ~/.ssh/id_rsa.pub ~/.ssh/authorized_keys'
        " && /usr/sbin/sshd -t -f ~/.sshd_config && id -u && python -c 'import mxnet, horovod.mxnet'",
    )
    assert log.split() == ["1000"]


@pytest.fixture(scope="module")
def airflow_image() -> Image:
    """docker/Dockerfile (the Docker stack's Airflow image), built FROM the local stand-ins of its
    public bases (apache/airflow: the local base with the official image's user, paths and pip
    settings; golang: the local base with this host's Go). Its eksctl stage compiles eksctl from
    source and its venvs stage builds every image's virtualenv: tens of minutes the first time,
    then cached by content hash (buildah's layer cache for edits of dags/ or plugins/)."""
    reason = missing_prerequisites()
    if reason:
        pytest.skip(f"no image builds: {reason}")
    return build_images("airflow")["airflow"]


def test_airflow_image_runs_airflow_eksctl_and_imports_every_dag(airflow_image: Image, out: Path) -> None:
    """What the stack's services run: Airflow 3.3.2 with the project's plugins, eksctl 0.215.0
    built from its pinned release, every DAG importable, and the image virtualenvs in place.
    (The official image's /entrypoint is the public base's, not built here: the commands run directly.)"""
    log = run_in_container(
        airflow_image,
        out,
        "bash",
        "-c",
        "airflow version && eksctl version && ls /opt/airflow/.venvs && AIRFLOW__CORE__LOAD_EXAMPLES=False python -c '"
        'from airflow.dag_processing.dagbag import DagBag; b = DagBag("/opt/airflow/dags"); '
        "print(sorted(b.dag_ids)); assert not b.import_errors, b.import_errors'",
    )
    lines = log.split()
    assert "3.3.2" in lines and "0.215.0" in lines
    assert {"inference", "mxnet-horovod", "tf-fashion-mnist"} <= set(lines)
    assert "'fashion_mnist_training'," in log and "'model_deployment'," in log


def test_mxnet_image_trains_with_horovodrun_on_two_ranks(node_images: dict[str, Image], out: Path) -> None:
    """``horovodrun -np 2 --gloo`` in the image, as the launcher runs it, here with both ranks in
    one container. ``buildah run`` writes no /etc/hosts entry for the container's host name:
    unpatched Horovod 0.28.1 resolved that name for its process-set Gloo context and both ranks
    died in ``hvd.init()`` (segfault, then "Resource deadlock avoided"); the image's Horovod uses
    the interface horovodrun chose (images/mxnet-horovod/horovod-gloo-iface.patch).
    127.0.0.1 names this container itself to horovodrun, so no SSH is involved."""
    log = run_in_container(
        node_images["mxnet-horovod"],
        out,
        "horovodrun",
        "-np",
        "2",
        "-H",
        "127.0.0.1:2",
        "--gloo",
        "python",
        "/opt/eksml/train.py",
        "--data-uri",
        "/data",
        "--model-uri",
        "/out/mx-model",
        "--epochs",
        "1",
        "--no-onnx",
        *SLICE,
    )
    assert "Segmentation fault" not in log
    metrics = json.loads((out / "mx-model" / "metrics.json").read_text())
    assert metrics["framework"] == "mxnet" and metrics["workers"] == 2 and metrics["epochs"] == 1
    assert metrics["horovod"] == {"version": "0.28.1", "controller": "gloo"}
    assert metrics["train_images"] == 1024 and metrics["test_images"] == 512
    assert metrics["test_accuracy"] > 0.3  # ten classes: chance is 0.1


def test_a_dockerfiles_shell_applies_to_its_run_steps(node_images: dict[str, Image], tmp_path: Path) -> None:
    """lib.sh's build_image as build-images.sh calls it, on a two-step Dockerfile FROM the local base.
    The MXNet Dockerfile's RUN steps rely on its ``SHELL ["/bin/bash", "-euo", "pipefail", "-c"]``;
    buildah's default OCI format ignores SHELL and ran them with ``/bin/sh -c`` (no -e, no
    pipefail: a failed command inside a step did not fail the build). Docker honours it."""
    base = node_images["eksml-base"].ref
    context = tmp_path / "context"
    context.mkdir()

    def build(run_step: str) -> subprocess.CompletedProcess[str]:
        (context / "Dockerfile").write_text(
            f'ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nSHELL ["/bin/bash", "-euo", "pipefail", "-c"]\nRUN {run_step}\n'
        )
        script = (
            f"set -euo pipefail; cache={tmp_path}; source {ROOT / 'tools' / 'k8s-node' / 'lib.sh'}; "
            f"dockerfile={context / 'Dockerfile'} context={context} ignore=/nonexistent base_ref={base} layers=false; "
            "extra_args=(); build_image unused localhost/eksml-shell-probe:test"
        )
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)

    try:
        assert build('test -n "$BASH_VERSION"').returncode == 0  # bash runs the step
        failed = build("false | true")  # pipefail: the pipeline's failure fails the step
        assert failed.returncode != 0, failed.stderr[-1000:]
    finally:
        subprocess.run(["buildah", "rmi", "localhost/eksml-shell-probe:test"], capture_output=True, check=False)
