"""What a failed or finished pod leaves behind: its last log lines as the termination message
(``FallbackToLogsOnError``, which the provider quotes in the task's error) and, with
CloudWatch logs on, a task link to the pod's log events."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fixtures.specs import small_training_spec

from eksml.kubernetes.links import PodLogsLink, application_log_group
from eksml.kubernetes.manifests import render_mpijob
from eksml.kubernetes.operators import render_training_pod
from eksml.settings import Settings

AWS = Settings(profile="aws", store_uri="s3://eksml-bucket/store", cluster_name="eksml")


def _spec(workers: int = 0):
    return small_training_spec(
        "s3://eksml-bucket/store", "mxnet" if workers else "tensorflow", gpus=1, workers=workers or 1
    )


def test_training_pod_and_mpi_containers_fall_back_to_their_logs():
    (container,) = render_training_pod(_spec(), AWS)["spec"]["containers"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    job = render_mpijob(_spec(workers=2), AWS, "mpi-logs")
    for replica in ("Launcher", "Worker"):
        (c,) = job["spec"]["mpiReplicaSpecs"][replica]["template"]["spec"]["containers"]
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError", replica


def _context():
    ti = SimpleNamespace(xcoms={})
    ti.xcom_push = lambda key, value: ti.xcoms.__setitem__(key, value)
    return {"ti": ti}


@pytest.mark.parametrize("on", [False, True])
def test_log_link_is_recorded_and_empty_unless_pod_logs_go_to_cloudwatch(on):
    context, operator = _context(), SimpleNamespace(do_xcom_push=True)
    PodLogsLink.persist_for(context, operator, AWS.replace(cloudwatch_logs=on), "eksml", "train-tf-1a2b")
    assert PodLogsLink.key in context["ti"].xcoms  # pushed either way: the task runner looks it up
    stored = context["ti"].xcoms[PodLogsLink.key]
    if not on:
        assert stored is None
        return
    url = PodLogsLink().format_link(**stored)
    assert url.startswith("https://console.aws.amazon.com/cloudwatch/home?region=us-west-2#logsV2:log-groups/")
    assert "$252Faws$252Fcontainerinsights$252Feksml$252Fapplication" in url
    assert url.endswith("filterPattern$3D$2522train-tf-1a2b$2522")
    assert application_log_group("eksml") == "/aws/containerinsights/eksml/application"
