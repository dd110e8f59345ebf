"""``python -m eksml.cluster connection``: print the Airflow ``kubernetes`` connection for an
EKS cluster, built from the EKS API, as an ``AIRFLOW_CONN_<ID>=...`` line.

The value holds no secret and no path of this machine (endpoint, CA and a token exec command
run by the worker's ``python``, signing at each refresh with the Airflow AWS connection named
by ``--aws-conn-id``), so it can go into any worker's environment or secrets backend as is.
The pipeline's own tasks do not need it: they build the same connection per run.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from eksml.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """The command; an error ends in one line with its fix (``--debug``: the traceback)."""
    from eksml.cli import run

    return run(_main, argv)


def _main(argv: list[str]) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="python -m eksml.cluster",
        description=__doc__.splitlines()[0],
        epilog="--debug: show the traceback of an error",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conn = sub.add_parser("connection", help="print AIRFLOW_CONN_<ID>=<json> for the cluster")
    conn.add_argument("--cluster-name", default=settings.cluster_name)
    conn.add_argument("--region", default=settings.region)
    conn.add_argument("--conn-id", default=settings.kubernetes_conn_id or "kubernetes_default")
    conn.add_argument("--namespace", default=settings.namespace)
    conn.add_argument(
        "--aws-conn-id",
        default=settings.aws_conn_id,
        help="Airflow AWS connection for DescribeCluster and for the token ('' for the worker's AWS chain)",
    )
    args = parser.parse_args(argv)

    from eksml.cluster.connection import ClusterNotReadyError, build_kubernetes_connection, connection_env

    try:
        connection = build_kubernetes_connection(
            args.cluster_name,
            args.region,
            conn_id=args.conn_id,
            namespace=args.namespace,
            aws_conn_id=args.aws_conn_id or None,
        )
    except ClusterNotReadyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name, value = connection_env(connection)
    print(f"{name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
