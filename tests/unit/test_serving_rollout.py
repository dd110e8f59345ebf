"""Rollout status, rollback target, and the apply -> wait -> smoke -> roll back sequence."""

from __future__ import annotations

import copy

import pytest

from eksml.kubernetes.hooks import DeploymentHook, previous_template, rollout_status
from eksml.serving.operators import RolloutError, roll_out
from eksml.serving.smoke import SmokeTestError


def deployment(generation=2, observed=2, replicas=2, updated=2, total=2, available=2, revision="3", reason=None):
    conditions = [{"type": "Progressing", "reason": reason or "NewReplicaSetAvailable", "message": "m"}]
    return {
        "metadata": {
            "name": "fashion-mnist-inference",
            "uid": "dep-uid",
            "generation": generation,
            "annotations": {"deployment.kubernetes.io/revision": revision},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x", "v": "new"}}, "spec": {"containers": []}},
        },
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "conditions": conditions,
        },
    }


def replicaset(revision, version, owner="dep-uid"):
    return {
        "metadata": {
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "uid": owner}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "x", "v": version, "pod-template-hash": "h"}},
                "spec": {"containers": [{"name": "server", "args": [version]}]},
            }
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "done", "failed", "text"),
    [
        ({}, True, False, "2 of 2 replicas available"),
        ({"observed": 1}, False, False, "observe"),
        ({"updated": 1}, False, False, "1 of 2 replicas updated"),
        ({"total": 3}, False, False, "old replicas pending"),
        ({"available": 1}, False, False, "1 of 2 updated replicas available"),
        ({"updated": 1, "reason": "ProgressDeadlineExceeded"}, False, True, "progress deadline"),
    ],
)
def test_rollout_status_reads_like_kubectl(kwargs, done, failed, text):
    status = rollout_status(deployment(**kwargs))
    assert (status.done, status.failed) == (done, failed)
    assert text in status.message


def test_previous_template_is_the_newest_older_owned_revision_without_the_hash_label():
    sets = [replicaset(1, "v1"), replicaset(2, "v2"), replicaset(3, "v3"), replicaset(2, "foreign", owner="other")]
    revision, template = previous_template(deployment(revision="3"), sets)
    assert revision == 2
    assert template["metadata"]["labels"] == {"app": "x", "v": "v2"}
    assert template["spec"]["containers"][0]["args"] == ["v2"]
    assert previous_template(deployment(revision="1"), sets) is None


class FakeApps:
    """Just enough of AppsV1Api: a Deployment whose rollout completes on the next read."""

    def __init__(self):
        self.current = deployment(revision="2")
        self.calls = []
        self.sets = [replicaset(1, "old"), replicaset(2, "new")]

    def patch_namespaced_deployment(self, name, namespace, body, **kwargs):
        self.calls.append(("patch", name, namespace, copy.deepcopy(body), kwargs))

    def read_namespaced_deployment(self, name, namespace):
        return copy.deepcopy(self.current)

    def list_namespaced_replica_set(self, namespace, label_selector):
        self.calls.append(("list", namespace, label_selector))
        return type("List", (), {"items": copy.deepcopy(self.sets)})()


class FakeCore:
    def __init__(self):
        self.calls = []

    def patch_namespaced_service(self, name, namespace, body, **kwargs):
        self.calls.append((name, namespace, kwargs))


class FakeDynamic:
    """Just enough of ``kubernetes.dynamic.DynamicClient``: every kind namespaced, each
    server-side apply recorded. Does not prove the API server accepts the patch (the k8s tier
    applies through the real dynamic client)."""

    def __init__(self):
        self.calls = []
        self.resources = self

    def get(self, api_version, kind):
        return type("Resource", (), {"namespaced": True, "kind": kind, "api_version": api_version})()

    def server_side_apply(self, resource, body, name, namespace, **kwargs):
        self.calls.append((resource.kind, name, namespace, copy.deepcopy(body), kwargs))


class FakeClient:
    def sanitize_for_serialization(self, obj):
        return obj


class Rollout:
    """A DeploymentHook whose API clients are the fakes above (the provider's hook builds them
    lazily, so nothing is connected), and the deployment step through it."""

    def __init__(self):
        self.hook = DeploymentHook(conn_id=None, kubernetes_conn_id=None)
        self.hook.api_client, self.hook.apps_v1_client, self.hook.core_v1_client = FakeClient(), FakeApps(), FakeCore()
        self.hook.dynamic_client = FakeDynamic()
        self.apps, self.core, self.dynamic = (
            self.hook.apps_v1_client,
            self.hook.core_v1_client,
            self.hook.dynamic_client,
        )

    def deploy(self, objects, check):
        return roll_out(
            self.hook,
            objects,
            check,
            name="fashion-mnist-inference",
            namespace="serving",
            timeout=5,
            poll_interval=0,
            sleep=lambda s: None,
        )


def rollout() -> Rollout:
    return Rollout()


OBJECTS = [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fashion-mnist-inference"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fashion-mnist-inference"}},
]


def test_a_passing_smoke_test_keeps_the_new_revision():
    r = rollout()
    result = r.deploy(OBJECTS, lambda transport: {"accuracy": 0.9, "passed": True})
    assert result["smoke"]["passed"] is True
    assert [(c[0], c[2], c[4]) for c in r.dynamic.calls] == [
        ("Deployment", "serving", {"field_manager": "eksml", "force_conflicts": True}),
        ("Service", "serving", {"field_manager": "eksml", "force_conflicts": True}),
    ]
    assert not [c for c in r.apps.calls if c[0] == "list"]  # no rollback looked for


def test_a_failing_smoke_test_rolls_back_to_the_previous_template_and_fails_with_the_reason():
    r = rollout()

    def check(transport):
        raise SmokeTestError("accuracy 0.10 on 32 test images is below 0.50")

    with pytest.raises(RolloutError, match=r"smoke test failed: accuracy 0.10 .* rolled back to revision 1"):
        r.deploy(OBJECTS, check)
    patch = r.apps.calls[-1]
    assert patch[0] == "patch" and "_content_type" not in patch[4]  # a JSON patch (list body)
    assert patch[3] == [
        {
            "op": "replace",
            "path": "/spec/template",
            "value": {
                "metadata": {"labels": {"app": "x", "v": "old"}},
                "spec": {"containers": [{"name": "server", "args": ["old"]}]},
            },
        }
    ]
    assert ("list", "serving", "app=x") in r.apps.calls


def test_a_stuck_rollout_is_rolled_back_without_a_smoke_test():
    r = rollout()
    r.apps.current = deployment(revision="2", updated=1, reason="ProgressDeadlineExceeded")
    called = []
    with pytest.raises(RolloutError, match="rollout failed: rollout exceeded its progress deadline"):
        r.deploy(OBJECTS, lambda transport: called.append(1))
    assert not called


def test_a_first_deploy_that_fails_says_there_is_nothing_to_roll_back_to():
    r = rollout()
    r.apps.sets = [replicaset(2, "new")]

    def check(transport):
        raise SmokeTestError("V1 predict failed: HTTP 503")

    with pytest.raises(RolloutError, match="no previous revision to roll back to"):
        r.deploy(OBJECTS, check)


def test_unknown_kinds_are_refused():
    r = rollout()
    with pytest.raises(ValueError, match="cannot apply a ConfigMap"):
        r.deploy([*OBJECTS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}], lambda t: {})
    assert r.dynamic.calls == []  # refused before anything was applied


class CutShort:
    """A real HTTP server in front of a model (what the API server's proxy relays): ready, V1
    and V2 answered properly, except that the first ``cut`` POST replies announce their full
    length and stop short of it, as the proxy's reply did in a node-tier run (``IncompleteRead(3986
    bytes read, 488 more expected)``)."""

    def __init__(self, cut: int, labels: list[int]):
        import http.server
        import json
        import threading

        owner = self
        self.cut, self.posts = cut, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, payload, short=False):
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if short else body)
                if short:
                    self.close_connection = True

            def do_GET(self):
                self.reply({"name": "fashion-mnist", "ready": True})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts += 1
                short = owner.posts <= owner.cut
                if self.path.endswith(":predict"):
                    predictions = [{"class": c, "probabilities": [0.1] * 10} for c in labels]
                    self.reply({"model_version": "v2", "predictions": predictions}, short)
                else:
                    self.reply({"outputs": [{"name": "class", "data": labels}]}, short)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def api_client(self):
        from kubernetes.client import ApiClient, Configuration

        configuration = Configuration(host=f"http://127.0.0.1:{self.server.server_port}")
        configuration.retries = 0  # what the provider's client would not repeat either: a POST
        return ApiClient(configuration)


@pytest.mark.parametrize(("cut", "passes"), [(1, True), (10, False)])
def test_a_reply_cut_short_on_the_way_is_asked_again_and_a_server_that_keeps_cutting_is_rolled_back(cut, passes):
    """Through the hook's real Service proxy call (a real kubernetes ApiClient, urllib3 and
    socket): before, urllib3's ProtocolError escaped roll_out, so a failed smoke test left the
    new version serving with no rollback. Now a cut reply is 'no answer', asked again (twice),
    and a server that never answers whole fails the smoke test and is rolled back."""
    from eksml.serving.smoke import smoke_test

    labels = list(range(10))
    images = [[[0] * 28 for _ in range(28)] for _ in labels]
    server = CutShort(cut, labels)
    r = rollout()
    r.hook.api_client = server.api_client()
    waits = []

    def check(transport):
        return smoke_test("service/x", "fashion-mnist", images, labels, transport=transport, sleep=waits.append)

    try:
        if passes:
            result = r.deploy(OBJECTS, check)
            assert result["smoke"]["passed"] is True and result["smoke"]["accuracy"] == 1.0
            assert waits == [1.0] and server.posts == 3  # V1 twice (the first cut), V2 once
            assert not [c for c in r.apps.calls if c[0] == "patch"]  # nothing rolled back
        else:
            with pytest.raises(
                RolloutError, match=r"no answer through the API server's proxy.*rolled back to revision 1"
            ):
                r.deploy(OBJECTS, check)
            assert waits == [1.0, 2.0] and server.posts == 3  # V1 asked three times
            assert r.apps.calls[-1][0] == "patch"
    finally:
        server.server.shutdown()
