"""Pinned upstream add-ons (NVIDIA device plugin, Kubeflow MPI operator), fetched by URL.

The list lives in ``include/kubernetes/cluster-addons/kustomization.yaml`` (one source of
truth: the pipeline and ``kubectl apply --server-side -k`` read the same file). Every URL
must name a release tag, so a cluster built today and one built next month run the same
versions.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from eksml.settings import PROJECT_ROOT

KUSTOMIZATION = PROJECT_ROOT / "include" / "kubernetes" / "cluster-addons" / "kustomization.yaml"
_PINNED_RE = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/v\d+\.\d+\.\d+/")
#: Objects that others depend on go first (a namespaced object needs its Namespace).
_KIND_ORDER = {"CustomResourceDefinition": 0, "Namespace": 1, "ServiceAccount": 2, "ClusterRole": 3, "Role": 3}


class AddonError(ValueError):
    pass


def addon_urls(kustomization: Path = KUSTOMIZATION) -> list[str]:
    """Remote resources of the kustomization; each must be pinned to a vX.Y.Z tag."""
    doc = yaml.safe_load(kustomization.read_text()) or {}
    urls = [r for r in doc.get("resources", []) if "://" in r]
    unpinned = [u for u in urls if not _PINNED_RE.match(u)]
    if unpinned:
        raise AddonError(f"add-on URLs must be https and pinned to a release tag vX.Y.Z: {unpinned}")
    return urls


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and (host == "localhost" or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return False


def fetch_manifest(url: str, timeout: float = 30) -> str:
    """Download a manifest over https (plain http only from a loopback mirror)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and _is_loopback(parsed.hostname)):
        raise AddonError(f"refusing to fetch {url}: https only")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
        return response.read().decode()


def parse_manifest(text: str, source: str = "manifest") -> list[dict[str, Any]]:
    """Kubernetes objects of a multi-document YAML; empty documents and Lists are flattened."""
    objects: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if doc.get("kind", "").endswith("List") and "items" in doc:
            objects.extend(doc["items"])
            continue
        if not all(k in doc for k in ("apiVersion", "kind", "metadata")):
            raise AddonError(f"{source}: a document is not a Kubernetes object: {str(doc)[:200]}")
        objects.append(doc)
    return objects


def apply_order(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stable sort: CRDs, Namespaces, identities and roles before what uses them."""
    return sorted(objects, key=lambda o: _KIND_ORDER.get(o["kind"], 9))


def addon_objects(urls: list[str] | None = None) -> list[dict[str, Any]]:
    """All objects of the pinned add-ons, fetched now."""
    objects: list[dict[str, Any]] = []
    for url in urls if urls is not None else addon_urls():
        objects.extend(parse_manifest(fetch_manifest(url), url))
    return objects
