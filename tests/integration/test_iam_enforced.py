"""The rendered IAM policies against the real store code, on a moto server that enforces IAM.

Every S3 call each identity's workload makes (preflight's bucket checks and the amazon
provider's ``SageMakerHook.check_training_config`` included) must be allowed by the policy the
project renders for it, with ``Condition`` blocks evaluated, and calls outside its scope
(another bucket, another deployment's prefix, an area it was not granted) must be refused. See
``tests/fixtures/moto_iam_server.py`` for what the server adds to moto and
``tests/fixtures/iam_eval.py`` for the evaluator's limits.
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
    keys = {  # one listing per area: the pipeline may not list the store's root
        o["Key"]
        for area in ("staging", "models", "checkpoints")
        for o in s3.list_objects_v2(Bucket=iw.STORE_BUCKET, Prefix=f"eksml/{area}/{iw.MODEL}/")["Contents"]
    }
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
    listing = iw.other_prefix_listing_denied(server, server.assume(identity))
    assert all(listing.values()), f"{identity} may list {[p for p, d in listing.items() if not d]}"


def test_the_bucket_checks_ran_with_their_conditions_evaluated(enforced) -> None:
    _, done, _, _ = enforced
    by_name = {w.name: w for w in done}
    preflight = {a["why"]: a for c in by_name["preflight"].calls for a in c.authorizations}
    # HeadBucket is s3:ListBucket with no s3:prefix; the prefix-conditioned statement was evaluated too
    assert preflight["HeadBucket"]["action"] == "s3:ListBucket" and preflight["HeadBucket"]["context"] == {}
    assert preflight["HeadBucket"]["conditions"] >= 2
    assert preflight["GET ?location"]["decision"] == "allowed"
    provider = by_name["sagemaker submission"].calls
    assert any(c.method == "HEAD" and not c.key for c in provider)  # SageMakerHook.check_for_bucket
    listed = [a["context"] for c in provider for a in c.authorizations if a["why"] == "ListObjects"]
    assert listed and all("s3:prefix" in ctx for ctx in listed)  # check_for_prefix


def test_a_missing_key_is_404_not_403(enforced) -> None:
    """s3fs raises PermissionError from exists() on a 403; each identity must see False."""
    import s3fs

    server, *_ = enforced
    readable = {"training": "data", "inference": "models", "sagemaker": "data", "pipeline": "models"}
    for identity in iw.IDENTITIES:
        with iw.as_identity(server, server.assume(identity)):
            fs = s3fs.S3FileSystem()
            missing = f"{iw.STORE_BUCKET}/eksml/{readable[identity]}/{iw.MODEL}/no-such-version/metadata.json"
            assert fs.exists(missing) is False, identity


@pytest.fixture(scope="module")
def enforced_kms(tmp_path_factory: pytest.TempPathFactory):
    """The same workloads on a bucket encrypted with a customer-managed key (``store_kms_key_arn``)."""
    policies = iw.rendered_policies(kms_key_arn=iw.KMS_KEY)
    server, done, plan = iw.run_all(tmp_path_factory.mktemp("iam-kms"), policies, kms_key=iw.KMS_KEY)
    yield done
    server.stop()


def test_every_workload_call_is_allowed_on_a_kms_bucket(enforced_kms) -> None:
    print("\n" + iw.summary(enforced_kms))
    refused = [str(c) for w in enforced_kms for c in w.calls if not c.allowed]
    assert not refused, "\n".join(refused)
    kms = {
        a["action"] for w in enforced_kms for c in w.calls for a in c.authorizations if a["action"].startswith("kms:")
    }
    assert kms == {"kms:Decrypt", "kms:GenerateDataKey"}
