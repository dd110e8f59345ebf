"""Create the S3 bucket of the configured store (``EKSML_STORE_URI=s3://bucket/prefix``) if it
is missing, through the project's AWS connection (in the Docker stack: the S3 emulator).

Idempotent; a ``file://`` store needs nothing. Run by docker/init.sh before any DAG runs.
Usage: python docker/init_store.py
"""

from __future__ import annotations

import sys
from urllib.parse import urlparse


def ensure_bucket(store_uri: str, aws_conn_id: str, region: str) -> str:
    """Return one line saying whether the store's bucket was created or already there."""
    parsed = urlparse(store_uri)
    if parsed.scheme != "s3":
        return f"store {store_uri}: not on S3, nothing to create"
    if not parsed.netloc:
        raise ValueError(f"store_uri {store_uri!r} names no bucket")
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    if hook.check_for_bucket(parsed.netloc):
        return f"bucket {parsed.netloc}: already there"
    hook.create_bucket(bucket_name=parsed.netloc, region_name=hook.region_name or region)
    return f"bucket {parsed.netloc}: created"


def main() -> int:
    from eksml.settings import load_settings

    settings = load_settings()
    print(ensure_bucket(settings.store_uri, settings.aws_conn_id, settings.region))
    return 0


if __name__ == "__main__":
    sys.exit(main())
