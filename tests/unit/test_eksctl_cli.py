"""eksctl CLI plumbing: version checks, output parsing, redaction, process handling."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from eksml.cluster.hooks import (
    EksctlError,
    EksctlHook,
    EksctlVersionError,
    Redactor,
    RunResult,
    arun_streaming,
    create_cluster_args,
    eksctl_environment,
    parse_get_cluster,
    parse_get_nodegroups,
    parse_version,
    require_version,
    run_captured,
)


def test_version_parsing():
    assert parse_version("0.215.0\n") == (0, 215, 0)
    assert parse_version('{"Version":"0.210.1","PreReleaseID":""}') == (0, 210, 1)
    assert require_version("0.202.0") == (0, 202, 0)
    with pytest.raises(EksctlVersionError, match="too old"):
        require_version("0.201.9")
    with pytest.raises(EksctlVersionError, match="cannot read"):
        parse_version("unknown")


def test_get_cluster_output():
    ok = RunResult(0, stdout='[{"Name": "c1", "Status": "ACTIVE", "Version": "1.33", "Tags": {"a": "b"}}]')
    state = parse_get_cluster(ok, "c1")
    assert (state.status, state.version, state.tags) == ("ACTIVE", "1.33", {"a": "b"})
    missing = RunResult(1, tail=["Error: ... ResourceNotFoundException: No cluster found for name: c1."])
    assert parse_get_cluster(missing, "c1") is None
    denied = RunResult(1, tail=["Error: AccessDeniedException: not authorized to perform eks:DescribeCluster"])
    with pytest.raises(EksctlError, match="AccessDenied"):
        parse_get_cluster(denied, "c1")


def test_get_nodegroups_output():
    out = RunResult(
        0,
        stdout='[{"Name": "ng-train", "Status": "ACTIVE", "MinSize": 0, "DesiredCapacity": 2, "MaxSize": 4, '
        '"InstanceType": "p3.8xlarge"}]',
    )
    (ng,) = parse_get_nodegroups(out, "c").values()
    assert (ng.min_size, ng.desired, ng.max_size, ng.instance_types) == (0, 2, 4, ("p3.8xlarge",))


def test_argv_is_a_list_and_a_hostile_value_stays_one_argument():
    args = create_cluster_args("/tmp/x; rm -rf /.yaml")
    assert args[:4] == ["create", "cluster", "-f", "/tmp/x; rm -rf /.yaml"]


def test_redaction():
    redact = Redactor(["s3cr3t-value-123"])
    line = (
        "key AKIAIOSFODNN7EXAMPLE secret=wJalrXUtnFEMI/K7MDENG token: abc.def s3cr3t-value-123 "
        "Authorization: Bearer eyJhbGci k8s-aws-v1.aHR0cHM6Ly9zdHM X-Amz-Signature=deadbeef&x=1"
    )
    cleaned = redact(line)
    for secret in (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI",
        "abc.def",
        "s3cr3t-value-123",
        "eyJhbGci",
        "aHR0cHM6Ly9zdHM",
        "deadbeef",
    ):
        assert secret not in cleaned
    assert redact("creating cluster eksml in us-west-2") == "creating cluster eksml in us-west-2"


def test_environment_from_an_airflow_connection(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_EKSCTL_TEST",
        '{"conn_type": "aws", "login": "AKIAIOSFODNN7EXAMPLE", "password": "secret-key-value"}',
    )
    env, secrets = eksctl_environment(
        "eksctl_test", "eu-west-1", base={"PATH": "/usr/bin", "AWS_PROFILE": "x", "OTHER": "y"}
    )
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAIOSFODNN7EXAMPLE" and env["AWS_SECRET_ACCESS_KEY"] == "secret-key-value"
    assert env["AWS_REGION"] == "eu-west-1" and "AWS_PROFILE" not in env and "OTHER" not in env
    assert secrets == ["secret-key-value"]
    env, _ = eksctl_environment(None, "eu-west-1", base={"PATH": "/usr/bin", "AWS_PROFILE": "ci"})
    assert env["AWS_PROFILE"] == "ci" and "AWS_ACCESS_KEY_ID" not in env


def test_captured_timeout():
    result = run_captured([sys.executable, "-c", "import time; time.sleep(5)"], env={}, redact=str, timeout=0.5)
    assert result.timed_out and result.returncode == -1


def test_streaming_redacts_and_times_out():
    lines: list[str] = []
    script = "import sys, time; print('token=abc123', flush=True); time.sleep(30)"
    # The guard (20 s) is shorter than the child's sleep (30 s): only the 1 s timeout ends it in time.
    run = arun_streaming([sys.executable, "-c", script], env={}, log=lines.append, redact=Redactor(), timeout=1)
    result = asyncio.run(asyncio.wait_for(run, 20))
    assert result.timed_out
    assert lines == ["token=***"] and result.tail == lines


def test_hook_hands_the_connection_to_eksctl_and_masks_it_sync_and_async(tmp_path, monkeypatch):
    """A real child process stands in for eksctl: it echoes the secret it received on both streams."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_EKSCTL_HOOK_TEST",
        '{"conn_type": "aws", "login": "AKIAIOSFODNN7EXAMPLE", "password": "hook-secret-value"}',
    )
    binary = tmp_path / "eksctl"
    binary.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "if sys.argv[1:] == ['version']:\n"
        "    print('0.215.0')\n"
        "else:\n"
        "    key = os.environ['AWS_SECRET_ACCESS_KEY']\n"
        "    print('got', key, os.environ['AWS_REGION'], flush=True)\n"
        "    print('err', key, file=sys.stderr)\n"
    )
    os.chmod(binary, 0o755)
    logged: list[str] = []
    hook = EksctlHook("eu-west-1", "eksctl_hook_test", eksctl_path=str(binary), log_line=logged.append)
    assert hook.check_version() == (0, 215, 0)
    result = hook.captured(["anything"])
    assert result.stdout.split() == ["got", "hook-secret-value", "eu-west-1"]  # stdout is data, handed back as is
    assert result.tail == ["err ***"]
    assert logged == ["$ eksctl version", "$ eksctl anything"]

    async_hook = EksctlHook("eu-west-1", "eksctl_hook_test", eksctl_path=str(binary), log_line=logged.append)
    assert asyncio.run(async_hook.acheck_version()) == (0, 215, 0)
    streamed = asyncio.run(async_hook.astreaming(["create"], timeout=30))
    assert streamed.returncode == 0 and sorted(streamed.tail) == ["err ***", "got *** eu-west-1"]
    assert "hook-secret-value" not in " ".join(logged)
