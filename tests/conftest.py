"""Test-wide set-up: a throwaway AIRFLOW_HOME before anything imports Airflow, and the
project's plugins/ and images/common on sys.path as Airflow and the images put them."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_HOME = tempfile.mkdtemp(prefix="eksml-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# As the project's deployments set it (docker/Dockerfile, scripts/): deferrable operators defer.
os.environ.setdefault("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
# The provider stack (kubernetes clients, botocore) takes seconds to import on a busy 2-core box.
os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")
for var in [k for k in os.environ if k.startswith("EKSML_")]:
    del os.environ[var]  # tests choose their own settings
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "images" / "common"))

import json  # noqa: E402

import pytest  # noqa: E402

DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    if not (DATASET_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    return DATASET_DIR


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """An initialised metadata database in the throwaway AIRFLOW_HOME."""
    from airflow.utils import db

    db.initdb()
    return _HOME


#: The region of the moto server's clients, buckets and Airflow connection.
MOTO_REGION = "us-west-2"


@pytest.fixture(scope="session")
def moto_server():
    """A real moto server on a free loopback port, and an Airflow AWS connection pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": MOTO_REGION},
        }
    )
    os.environ.setdefault("AWS_DEFAULT_REGION", MOTO_REGION)
    yield endpoint
    server.stop()
    os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)


@pytest.fixture(scope="session")
def moto_env(moto_server: str) -> dict[str, str]:
    """The environment that points a subprocess's AWS SDK (boto3, s3fs) at the moto server."""
    return {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": MOTO_REGION,
    }


@pytest.fixture(scope="session")
def moto_client(moto_server: str) -> Callable[..., Any]:
    """``moto_client("s3")``: a boto3 client of the moto server (``region=`` for another region)."""
    import boto3

    def client(service: str, region: str = MOTO_REGION) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_server,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client


@pytest.fixture(scope="session")
def moto_bucket(moto_client: Callable[..., Any]) -> Callable[..., str]:
    """``moto_bucket("name")``: that bucket on the moto server, created if missing (the server, and
    so every bucket, lives for the whole session); returns the name."""

    def bucket(name: str, region: str = MOTO_REGION) -> str:
        s3 = moto_client("s3", region)
        if name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        return name

    return bucket
