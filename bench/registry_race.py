"""Racing champion promotions and reads on S3 (a moto server on loopback) and on a local store.

Prints, per store: trials, wrong champions, successful promotions, history entries lost or
with a wrong ``previous``, failed promotions and failed reads. Point ``PYTHONPATH`` at another
revision's ``plugins/`` to measure that revision with the same harness.

Usage: .venv/bin/python bench/registry_race.py [trials] [writers] [readers]
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="eksml-bench-"))
sys.path.append(str(ROOT / "plugins"))  # after PYTHONPATH, so another revision can be measured
sys.path.append(str(ROOT / "tests" / "integration"))


def main() -> None:
    trials, writers, readers = (int(a) for a in (sys.argv[1:] + ["30", "4", "2"][len(sys.argv) - 1 :])[:3])
    import boto3
    from moto.server import ThreadedMotoServer
    from promotion_race import RaceResult, race_trial

    import eksml

    logging.disable(logging.WARNING)  # request and promotion logs would drown the figures
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-west-2"},
        }
    )
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-west-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="race", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    print(f"registry code: {Path(eksml.__file__).parent}; {trials} trials, {writers} writers, {readers} readers")
    with tempfile.TemporaryDirectory(prefix="eksml-race-") as local:
        for name, uri in (("s3 (moto)", "s3://race"), ("local", Path(local).as_uri())):
            result = RaceResult()
            for trial in range(trials):
                race_trial(f"{uri}/t{trial}", writers, readers, result)
            print(f"{name:10} {result.line()}")
            for error in sorted(set(e.split(":")[0] + ":" + e.split(":")[1] for e in result.errors))[:5]:
                print(f"{'':10} e.g. {error}")
    server.stop()


if __name__ == "__main__":
    main()
