"""Write every Kubernetes object the ``aws`` profile would apply or submit, one per YAML file.

``python -m eksml.render --profile aws --out DIR`` renders, with default params and an
example run: the namespaces, service accounts (IRSA), RBAC and cluster autoscaler the
cluster set-up applies; the TensorFlow training Pod; the MXNet/Horovod MPIJob; the
evaluation Pod; and the inference Deployment and Service. Nothing contacts a cluster, so
anyone can check what would be sent with their own validators (``kubectl apply
--dry-run=server -f DIR`` against a real cluster, kubeconform, ...).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from eksml.params import validate_training_params
from eksml.runs import evaluation_spec, plan_run
from eksml.settings import Settings, SettingsError, load_settings
from eksml.specs import coerce_spec

EXAMPLE_STORE = "s3://eksml-example-bucket/ml"
EXAMPLE_RUN = "scheduled__2026-11-23T03:00:00+00:00"
EXAMPLE_INTERVAL = (datetime(2026, 11, 16, 3, tzinfo=timezone.utc), datetime(2026, 11, 23, 3, tzinfo=timezone.utc))
#: Content digest of the example data version (a real run computes it from the files).
EXAMPLE_DATA_DIGEST = "0123456789ab"


#: Account rendered when none is known (AWS's documentation account); the output says so.
EXAMPLE_ACCOUNT = "123456789012"


def aws_objects(
    settings: Settings, params: dict[str, Any] | None = None, account_id: str | None = None
) -> list[dict[str, Any]]:
    """All objects, in apply order, for one example training run with ``params``."""
    from eksml.cluster.objects import render_kubernetes_objects
    from eksml.kubernetes.manifests import job_name, render_mpijob
    from eksml.kubernetes.operators import render_training_pod
    from eksml.serving.manifests import render_inference_objects

    checked = validate_training_params({"framework": "both", **(params or {})})
    plan = plan_run(
        checked,
        settings,
        run_id=EXAMPLE_RUN,
        interval_start=EXAMPLE_INTERVAL[0],
        interval_end=EXAMPLE_INTERVAL[1],
        data_digest=EXAMPLE_DATA_DIGEST,
    )
    tf = plan["candidates"]["tensorflow"]
    mx = plan["candidates"]["mxnet"]
    evaluation = evaluation_spec(tf, plan["data_uri"], None, checked.limit_test)
    objects = list(render_kubernetes_objects(settings, account_id=account_id))
    objects.append(render_training_pod(coerce_spec(tf["spec"]), settings))
    mx_spec = coerce_spec(mx["spec"])
    objects.append(render_mpijob(mx_spec, settings, job_name(mx_spec.name, EXAMPLE_RUN)))
    objects.append(render_training_pod(evaluation, settings))
    objects.extend(render_inference_objects(settings, tf["version_uri"], tf["version"]))
    return objects


def file_name(index: int, obj: dict[str, Any]) -> str:
    kind = obj.get("kind", "object").lower()
    name = re.sub(r"[^a-z0-9.-]+", "-", obj.get("metadata", {}).get("name", "unnamed").lower())
    namespace = obj.get("metadata", {}).get("namespace")
    return f"{index:02d}-{kind}-{namespace + '-' if namespace else ''}{name}.yaml"


def write_objects(objects: list[dict[str, Any]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("[0-9][0-9]-*.yaml"):
        stale.unlink()  # a re-render replaces the previous set instead of mixing with it
    written = []
    for index, obj in enumerate(objects, start=1):
        path = out / file_name(index, obj)
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eksml.render", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profile", choices=["aws"], required=True, help="only the aws profile sends objects to a cluster"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the YAML files")
    parser.add_argument("--store-uri", help=f"s3:// store (default: settings, else {EXAMPLE_STORE})")
    args = parser.parse_args(argv)
    try:
        settings = load_settings({"profile": args.profile})
    except SettingsError as exc:
        parser.error(f"invalid settings: {exc}")
    store = args.store_uri or (settings.store_uri if settings.store_uri.startswith("s3://") else EXAMPLE_STORE)
    if not store.startswith("s3://"):
        parser.error("--store-uri must be an s3:// URI in the aws profile")
    settings = settings.replace(store_uri=store)
    from eksml.cluster.objects import default_account_id

    try:
        account = default_account_id(settings)
    except ValueError:
        account = EXAMPLE_ACCOUNT
        print(f"note: IRSA role ARNs use the example account {account}: set AWS_ACCOUNT_ID", file=sys.stderr)
    for path in write_objects(aws_objects(settings, account_id=account), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
