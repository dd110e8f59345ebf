"""The rendered IAM policies against the real store code, on a moto server that enforces IAM.

Every S3 call each identity's workload makes must be allowed by the policy the project renders
for it, and calls outside its scope (another bucket, another deployment's prefix, an area it
was not granted) must be refused. See ``tests/fixtures/iam_workloads.py`` for what moto does
not prove and how the ``s3:prefix`` condition is checked.
"""

from __future__ import annotations

import pytest
from fixtures import iam_workloads as iw


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("iam")
    policies = iw.rendered_policies()
    server, done, plan = iw.run_all(workdir, policies)
    yield server, done, plan, policies
    server.stop()


def test_setup_count_leaves_every_later_call_authenticated(enforced) -> None:
    server, *_ = enforced
    anonymous = iw.Creds("AKIANOBODYNOBODYNOB0", "nobody")
    with pytest.raises(Exception, match="InvalidAccessKeyId|InvalidClientTokenId|AccessDenied"):
        server.client("s3", anonymous).list_objects_v2(Bucket=iw.STORE_BUCKET)


def test_every_workload_call_is_allowed(enforced) -> None:
    _, done, _, _ = enforced
    print("\n" + iw.summary(done))
    refused = [str(c) for w in done for c in w.calls if not c.allowed]
    failed = [f"{w.name}/{o.step}: {o.error}" for w in done for o in w.outcomes if o.error]
    assert not refused, "\n".join(refused)
    assert not failed, "\n".join(failed)
    # the workloads really made the calls the policies are about
    by_name = {w.name: w for w in done}
    assert any(c.method == "DELETE" and "/checkpoints/" in f"/{c.key}" for c in by_name["training run a"].calls)
    assert any(c.method == "PUT" and "/staging/" in f"/{c.key}" for c in by_name["training run a"].calls)
    assert any(c.method == "GET" and "/models/" in f"/{c.key}" for c in by_name["evaluation run b"].calls)
    assert any(c.method == "PUT" and c.key.endswith("champion.json") for c in by_name["registry"].calls)


def test_the_workloads_left_what_the_pipeline_reads(enforced) -> None:
    server, _, plan, _ = enforced
    s3 = server.client("s3", server.assume("pipeline"))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=iw.STORE_BUCKET, Prefix="eksml/")["Contents"]}
    staging_b = plan.staging["b"].split(f"{iw.STORE_BUCKET}/", 1)[1]
    assert f"{staging_b}/evaluation.json" in keys and f"{staging_b}/metrics.json" in keys
    assert f"eksml/models/{iw.MODEL}/champion.json" in keys
    ckpt_a = plan.checkpoints["a"].split(f"{iw.STORE_BUCKET}/", 1)[1]
    assert f"{ckpt_a}/epoch-0002/model.keras" in keys and f"{ckpt_a}/epoch-0001/model.keras" not in keys


@pytest.mark.parametrize("identity", iw.IDENTITIES)
def test_calls_outside_the_scope_are_refused(enforced, identity: str) -> None:
    server, _, plan, policies = enforced
    results = iw.out_of_scope(server, identity, server.assume(identity), plan)
    allowed = [what for what, denied in results if not denied]
    assert not allowed, f"{identity} may: {allowed}"
    listing = iw.other_prefix_listing_denied(policies[identity])
    assert all(listing.values()), f"{identity} may list {[p for p, d in listing.items() if not d]}"


def test_string_like_follows_iam() -> None:
    assert iw.string_like("eksml/data/m/2026/x.gz", "eksml/data/m/*")
    assert not iw.string_like("eksml/data/mx", "eksml/data/m/*")
    assert iw.string_like("eksml/data/m", "eksml/data/m")
    assert iw.string_like("ab", "a?") and not iw.string_like("abc", "a?")
