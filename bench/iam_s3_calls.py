"""S3 calls per workload allowed and denied under the rendered IAM policies, on a moto server
that enforces IAM (see tests/fixtures/iam_workloads.py for the workloads and what moto ignores).

Usage: .venv/bin/python bench/iam_s3_calls.py [GIT_REV]
With GIT_REV the policies come from that revision's ``plugins/eksml/cluster/iam.py`` (identities
for which it renders no policy get a role that may do nothing); without, from the working tree.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "images" / "common"), str(ROOT / "tests")]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="eksml-bench-airflow-"))

import logging  # noqa: E402

import structlog  # noqa: E402
from fixtures import iam_workloads as iw  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def policies_at(rev: str) -> dict[str, dict | None]:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:plugins/eksml/cluster/iam.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"iam_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:iam.py", "exec"), module.__dict__)  # noqa: S102 - our own file at REV
    rendered: dict[str, dict | None] = {identity: None for identity in iw.IDENTITIES}
    rendered["training"] = module.training_policy(iw.STORE_URI, iw.MODEL, iw.REGION)
    rendered["inference"] = module.inference_policy(iw.STORE_URI, iw.MODEL, iw.REGION)
    account, role = "123456789012", "arn:aws:iam::123456789012:role/eksml-sagemaker"
    optional = {"account_id": account, "sagemaker_role_arn": role, "cluster_name": iw.CLUSTER}
    for identity, name in (("sagemaker", "sagemaker_execution_policy"), ("pipeline", "pipeline_policy")):
        render = getattr(module, name, None)
        if render is not None:  # the revision's own function, with the keywords it takes
            taken = inspect.signature(render).parameters
            kwargs = {k: v for k, v in optional.items() if k in taken}
            rendered[identity] = render(iw.STORE_URI, iw.MODEL, iw.REGION, **kwargs)
    return rendered


def main() -> None:
    rev = sys.argv[1] if len(sys.argv) > 1 else None
    policies = policies_at(rev) if rev else iw.rendered_policies()
    with tempfile.TemporaryDirectory(prefix="iam-bench-") as tmp:
        server, done, _ = iw.run_all(Path(tmp), policies)
        server.stop()
    print(f"policies from {rev or 'the working tree'}")
    print(iw.summary(done))
    for w in done:
        for call in w.calls:
            if not call.allowed:
                print("  ", call)
        for outcome in w.outcomes:
            if outcome.error:
                print(f"   {w.name}/{outcome.step} failed: {outcome.error}")


if __name__ == "__main__":
    main()
