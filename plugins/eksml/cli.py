"""How the project's command-line tools end on an error a user can fix: one line saying what
is wrong and how to fix it, exit status 1. ``--debug`` (any position) shows the traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

DEBUG_FLAG = "--debug"

#: The fix for missing AWS credentials, wherever boto3 looked for them.
NO_CREDENTIALS = (
    "no AWS credentials found: run `aws configure` or `aws sso login`, or set AWS_PROFILE "
    "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or define the Airflow AWS connection "
    "the settings name (aws_conn_id)"
)


def error_line(exc: BaseException) -> str:
    """The one line a user reads for ``exc``: known AWS and Airflow failures with their fix."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        TokenRetrievalError,
    )

    if isinstance(exc, NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, TokenRetrievalError):
        return f"the AWS SSO session has expired: run `aws sso login` ({exc})"
    if isinstance(exc, NoRegionError):
        return "no AWS region: set EKSML_REGION (or AWS_DEFAULT_REGION)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS: {exc} (check the network and the region)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "the request")
        return f"AWS refused {op}: {error.get('Code')}: {error.get('Message')} (check the credentials' permissions)"
    return f"{type(exc).__name__}: {exc}"


def run(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Call ``main(argv)``; an exception becomes ``error: <line>`` on stderr and status 1,
    unless ``--debug`` is among the arguments (then it propagates with its traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    if debug:
        args.remove(DEBUG_FLAG)
    try:
        return main(args)
    except Exception as exc:
        if debug:
            raise
        print(f"error: {error_line(exc)} (add {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        return 1
