"""Refuse a trigger whose conf names a key the DAG's params do not declare, at trigger time.

Airflow 3.3 validates each declared param against its schema when a run is created (the REST
API answers 400), but it accepts any other key: ``SerializedParamsDict.deep_merge``
(airflow/serialization/definitions/param.py) adds an unknown key as a new param without a
schema, and no DAG or config option turns that off. A misspelled ``{"epocs": 1}`` therefore
created a run that failed later, in its first task. This API-server middleware (registered by
the project's plugin) answers 400 instead, naming the key and the nearest declared one, for
the two doors that carry a conf: ``POST /api/v2/dags/{dag_id}/dagRuns`` (the REST API and
the UI's trigger form) and ``POST /api/v2/backfills`` (and its dry run). DAGs that declare no
params keep accepting any conf.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

_TRIGGER = re.compile(r"^/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/?$")
_BACKFILL = re.compile(r"^/api/v2/backfills(/dry_run)?/?$")


def unknown_keys_problem(dag_id: str, conf: Any, declared: Iterable[str]) -> str | None:
    """The one-line refusal for keys of ``conf`` that are not in ``declared``, or None."""
    declared = sorted(declared)
    if not declared or not isinstance(conf, dict):
        return None
    unknown = sorted(set(conf) - set(declared))
    if not unknown:
        return None
    hints = []
    for key in unknown:
        near = difflib.get_close_matches(key, declared, n=1)
        hints.append(f"'{key}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
    return f"unknown conf key {', '.join(hints)} for {dag_id}; its params are: {', '.join(declared)}"


def conf_of_request(path: str, body: bytes) -> tuple[str, Any] | None:
    """(dag_id, conf) of a trigger or backfill request, or None for any other request."""
    trigger = _TRIGGER.match(path)
    if not trigger and not _BACKFILL.match(path):
        return None
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return None  # Airflow answers malformed JSON itself
    if not isinstance(payload, dict):
        return None
    if trigger:
        from urllib.parse import unquote

        return unquote(trigger["dag_id"]), payload.get("conf")
    return payload.get("dag_id"), payload.get("dag_run_conf")


def declared_params(dag_id: str) -> list[str] | None:
    """The param names of the DAG's latest serialized version (None: no such DAG, Airflow says so)."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        return None if dag is None else list(dag.params)


class UnknownConfKeysMiddleware:
    """ASGI middleware: a 400 for a conf key the DAG does not declare; every other request passes."""

    def __init__(self, app: Any, lookup: Callable[[str], Iterable[str] | None] = declared_params) -> None:
        self.app = app
        self.lookup = lookup

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_candidate(scope["path"]):
            await self.app(scope, receive, send)
            return
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        problem = await _problem(scope["path"], body, self.lookup)
        if problem:
            payload = json.dumps({"detail": problem}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _is_candidate(path: str) -> bool:
    return bool(_TRIGGER.match(path) or _BACKFILL.match(path))


async def _problem(path: str, body: bytes, lookup: Callable[[str], Iterable[str] | None]) -> str | None:
    from anyio import to_thread

    request = conf_of_request(path, body)
    if request is None or not isinstance(request[0], str) or not isinstance(request[1], dict) or not request[1]:
        return None
    dag_id, conf = request
    declared = await to_thread.run_sync(lookup, dag_id)
    return None if declared is None else unknown_keys_problem(dag_id, conf, declared)
