"""``python -m eksml.cluster.eksctl render``: print the ClusterConfig YAML the pipeline would send.

Nothing is sent: the output is for reading and for checking with one's own validators
(``eksctl create cluster -f - --dry-run`` or the published JSON schema).
"""

from __future__ import annotations

import argparse
import sys

from eksml.cluster.config import ClusterConfigError, render_stream
from eksml.cluster.request import (
    DEFAULT_INFERENCE_NODES,
    DEFAULT_TRAIN_MAX_NODES,
    DEFAULT_TRAIN_NODES,
    ClusterRequest,
    build_cluster_configs,
)
from eksml.layout import Identity
from eksml.settings import SettingsError, load_settings

#: ``iam`` argument printing the lifecycle identity's permissions boundary.
LIFECYCLE_BOUNDARY = "lifecycle-boundary"

#: Bucket the IRSA policies name when the settings hold a local (file://) store, so the
#: command works out of the box; a note on stderr says so.
EXAMPLE_STORE = "s3://eksml-example-bucket/eksml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eksml.cluster.eksctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print the rendered ClusterConfig(s) as YAML")
    render.add_argument("--name", help="cluster name (default: settings.cluster_name)")
    render.add_argument("--region", help="AWS region (default: settings.region)")
    render.add_argument("--kubernetes-version", help="EKS Kubernetes version (default: settings)")
    render.add_argument("--store-uri", help="s3://BUCKET/PREFIX the IRSA policies are scoped to")
    render.add_argument(
        "--train-instance-type",
        action="append",
        dest="train_instance_types",
        metavar="TYPE",
        help="GPU instance type of ng-train; repeat with --spot for several (default g5.xlarge)",
    )
    render.add_argument("--train-nodes", type=int, help=f"desired ng-train nodes (default {DEFAULT_TRAIN_NODES})")
    render.add_argument("--train-min-nodes", type=int, help="minimum ng-train nodes (default 0)")
    render.add_argument(
        "--train-max-nodes",
        type=int,
        help=f"maximum ng-train nodes (default max({DEFAULT_TRAIN_MAX_NODES}, desired))",
    )
    render.add_argument("--train-volume-size", type=int, help="ng-train root volume in GiB (default 200)")
    render.add_argument("--spot", action="store_true", default=None, help="use spot capacity for ng-train")
    render.add_argument("--inference-instance-type", help="instance type of ng-inference (default m5.2xlarge)")
    render.add_argument(
        "--inference-nodes", type=int, help=f"desired ng-inference nodes (default {DEFAULT_INFERENCE_NODES})"
    )
    render.add_argument("--availability-zone", action="append", dest="availability_zones", metavar="AZ")
    render.add_argument("--pipeline-principal-arn", help="IAM principal of Airflow, mapped to the pipeline RBAC group")
    render.add_argument(
        "--dedicated-training-cluster",
        action="store_true",
        default=None,
        help="render a separate training cluster (<name>-training) and the inference cluster",
    )
    policy = sub.add_parser("iam", help="print an identity's IAM policy (JSON), rendered from the store layout")
    policy.add_argument("identity", choices=[*(identity.value for identity in Identity), LIFECYCLE_BOUNDARY])
    policy.add_argument("--store-uri", help="s3://BUCKET/PREFIX (default: settings)")
    policy.add_argument("--account-id", help="12-digit AWS account (default: any account in the ARNs)")
    return parser


def _print_policy(args: argparse.Namespace) -> int:
    import json

    from eksml.cluster import iam, lifecycle_iam

    settings = load_settings()
    store = args.store_uri or settings.store_uri
    kms = settings.store_kms_key_arn
    try:
        if args.identity in (Identity.LIFECYCLE, LIFECYCLE_BOUNDARY):
            render = (
                lifecycle_iam.lifecycle_policy
                if args.identity == Identity.LIFECYCLE
                else lifecycle_iam.lifecycle_boundary
            )
            accounts = (settings.training_service_account, settings.inference_service_account)
            doc = render(settings.cluster_name, settings.region, service_accounts=accounts, account_id=args.account_id)
        elif args.identity == Identity.PIPELINE:
            role = settings.sagemaker_role_arn or f"arn:aws:iam::{args.account_id or '*'}:role/SAGEMAKER_ROLE"
            doc = iam.pipeline_policy(
                store,
                settings.model_name,
                settings.region,
                sagemaker_role_arn=role,
                cluster_name=settings.cluster_name,
                account_id=args.account_id,
                kms_key_arn=kms,
            )
        elif args.identity == Identity.SAGEMAKER:
            doc = iam.sagemaker_execution_policy(
                store,
                settings.model_name,
                settings.region,
                account_id=args.account_id,
                vpc=bool(settings.sagemaker_subnets),
                kms_key_arn=kms,
            )
        else:
            render = iam.training_policy if args.identity == Identity.TRAINING else iam.inference_policy
            doc = render(store, settings.model_name, settings.region, kms_key_arn=kms)
    except iam.StoreUriError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "iam":
        return _print_policy(args)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        settings = load_settings()
        if "store_uri" not in overrides and not settings.store_uri.startswith("s3://"):
            overrides["store_uri"] = EXAMPLE_STORE
            print(
                f"note: store_uri {settings.store_uri} is not s3://; IRSA policies below are scoped to "
                f"{EXAMPLE_STORE} (set EKSML_STORE_URI or --store-uri)",
                file=sys.stderr,
            )
        request = ClusterRequest.from_settings(settings, **overrides)
        configs = build_cluster_configs(request)
    except (ClusterConfigError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_stream(configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
