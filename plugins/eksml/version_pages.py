"""The read-only page of a model version that the project's plugin serves in the Airflow API server,
for ``file://`` stores (:func:`create_app`, mounted at :data:`URL_PREFIX`).

The UI shows an extra link only when it is http(s) or on its own origin, so ``file://`` links
would be dropped. Only what a person reads is served (metadata, metrics, evaluation, the PNG
plots) of registered versions; model weights never are, and no path outside the model store can
be named.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from eksml.layout import PLOTS, READABLE, ModelVersion

#: Where the app is mounted in the API server; links of the outcome task point here.
URL_PREFIX = "/eksml"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def version_url(version: str, name: str = "") -> str:
    """Same-origin URL of a version's page (``name`` empty) or of one of its served files."""
    return f"{URL_PREFIX}/models/{version}/{name}"


def _models_root() -> Path | None:
    from urllib.parse import urlparse

    from eksml.settings import resolve_settings

    settings = resolve_settings()
    if not settings.models_root.startswith("file://"):
        return None
    return Path(urlparse(settings.models_root).path)


def _version_dir(version: str) -> Path:
    from fastapi import HTTPException

    root = _models_root()
    if root is None:
        raise HTTPException(404, "the model store is not a local folder: use the S3 console links")
    if not _VERSION.match(version) or not ModelVersion(root / version).registered:
        raise HTTPException(404, f"no registered version {version!r}")
    return root / version


def version_page(version: str, metadata: dict[str, Any]) -> str:
    """The HTML of a version: headline metrics, the plots inline, links to the JSON files."""
    metrics = metadata.get("metrics") or {}
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in metrics.items()
        if k != "per_class_accuracy"
    )
    plots = "".join(
        f'<h2>{name}</h2><img src="{name}" alt="{name}" style="max-width:100%">'
        for name in PLOTS
        if name in (metadata.get("files") or PLOTS)
    )
    files = " · ".join(f'<a href="{name}">{name}</a>' for name in READABLE if name not in PLOTS)
    title = html.escape(f"{version} ({metadata.get('framework')}, run {metadata.get('run_id')})")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(version)}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{title}</h1><p>{files}</p><table>{rows}</table>"
        f"{plots}</body></html>"
    )


def create_app():
    """The FastAPI sub-application the plugin registers."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    app = FastAPI(title="eksml model versions", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/models/{version}/", response_class=HTMLResponse)
    def page(version: str) -> str:
        return version_page(version, ModelVersion(_version_dir(version)).metadata() or {})

    @app.get("/models/{version}/{name}")
    def file(version: str, name: str) -> FileResponse:
        if name not in READABLE:
            raise HTTPException(404, f"{name!r} is not served (only metadata, metrics, evaluation and plots)")
        path = _version_dir(version) / name
        if not path.is_file():
            raise HTTPException(404, f"{version} has no {name}")
        return FileResponse(path, media_type=READABLE[name])

    return app
