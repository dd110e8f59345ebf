"""Pinned upstream add-ons (NVIDIA device plugin, Kubeflow MPI operator; the AWS Load Balancer
Controller's and Karpenter's CRDs when the settings ask), vendored with checksums.

The list lives in ``include/kubernetes/cluster-addons/kustomization.yaml`` (one source of
truth: the pipeline and ``kubectl apply --server-side -k`` read the same file). Its resources
are files vendored beside it at released versions, each with a SHA-256 in ``addons.sha256``:
a file that differs from its pinned digest (an edited copy, an upstream file dropped in
without updating the pin) is refused before anything is applied, and no cluster build
downloads anything. The kustomization's ``images`` entries (release tags for images the
upstream file names by a floating tag) and ``patches`` (the device plugin's node selector) are
applied here as kustomize would.

``eksml.cluster.apply.ApplyHook`` applies them, and the project's own objects, by
server-side apply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from eksml.errors import InvalidInput
from eksml.settings import PROJECT_ROOT

KUSTOMIZATION = PROJECT_ROOT / "include" / "kubernetes" / "cluster-addons" / "kustomization.yaml"
#: Add-ons applied only when a setting asks for them, each vendored the same way in its own folder.
ALB_CONTROLLER = PROJECT_ROOT / "include" / "kubernetes" / "aws-load-balancer-controller" / "kustomization.yaml"
KARPENTER = PROJECT_ROOT / "include" / "kubernetes" / "karpenter" / "kustomization.yaml"
CHECKSUMS = "addons.sha256"


class AddonError(InvalidInput):
    pass


def _pinned_digests(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS
    if not path.is_file():
        raise AddonError(f"{path} is missing: every vendored add-on needs a pinned SHA-256")
    digests = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            digests[name.strip().lstrip("*")] = digest.lower()
    return digests


def _verified(path: Path, digests: dict[str, str]) -> Path:
    name = path.name
    if name not in digests:
        raise AddonError(f"{name} has no pinned SHA-256 in {CHECKSUMS}")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != digests[name]:
        raise AddonError(
            f"{name} does not match its pinned SHA-256 ({actual} != {digests[name]}): "
            "refusing to apply a changed add-on"
        )
    return path


def pinned_file(kustomization: Path, name: str) -> Path:
    """A vendored file beside ``kustomization`` that is no resource (an IAM policy, a reference),
    checked against its pinned SHA-256 like the resources."""
    return _verified(kustomization.parent / name, _pinned_digests(kustomization.parent))


def addon_files(kustomization: Path = KUSTOMIZATION) -> list[Path]:
    """The vendored resources of the kustomization, each checked against its pinned SHA-256."""
    doc = yaml.safe_load(kustomization.read_text()) or {}
    resources = doc.get("resources", [])
    remote = [r for r in resources if "://" in r]
    if remote:
        raise AddonError(f"add-ons must be vendored files with a pinned SHA-256, not URLs: {remote}")
    digests = _pinned_digests(kustomization.parent)
    return [_verified(kustomization.parent / name, digests) for name in resources]


def _image_overrides(kustomization: Path) -> dict[str, str]:
    doc = yaml.safe_load(kustomization.read_text()) or {}
    return {i["name"]: i["newTag"] for i in doc.get("images", []) if i.get("newTag")}


def _set_image_tags(obj: dict[str, Any], tags: dict[str, str]) -> None:
    """kustomize's ``images: [{name, newTag}]`` for Deployments, DaemonSets and the like."""
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        name = container.get("image", "").rsplit("@", 1)[0]
        repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        if repo in tags:
            container["image"] = f"{repo}:{tags[repo]}"


def _merge(base: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    """The map part of a strategic merge patch; lists (merged by key upstream) are refused."""
    for key, value in patch.items():
        if isinstance(value, list):
            raise AddonError(f"{where}: list fields in patches are not supported here ({key})")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, where)
        else:
            base[key] = value


def _patches(kustomization: Path) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """kustomize ``patches: [{target: {kind, name}, patch}]`` (strategic merge, maps only)."""
    doc = yaml.safe_load(kustomization.read_text()) or {}
    return [(p["target"], yaml.safe_load(p["patch"])) for p in doc.get("patches", [])]


#: A per-cluster value in a vendored chart rendering, written as Flux's post-build substitution
#: writes it (``${CLUSTER_NAME}``): the chart is rendered once with these placeholders and
#: checksummed; the cluster's values replace them when the objects are built.
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def substitute(text: str, variables: Mapping[str, str], source: str) -> str:
    """``text`` with every ``${NAME}`` replaced; a name without a value is refused."""
    missing = sorted({name for name in _VARIABLE.findall(text) if name not in variables})
    if missing:
        raise AddonError(f"{source}: no value for {', '.join(missing)}")
    return _VARIABLE.sub(lambda m: variables[m.group(1)], text)


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


def addon_objects(
    kustomization: Path = KUSTOMIZATION, variables: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """All objects of the pinned add-ons, read from the vendored, checksum-verified files, with
    ``variables`` substituted (:func:`substitute`)."""
    tags = _image_overrides(kustomization)
    patches = _patches(kustomization)
    objects: list[dict[str, Any]] = []
    for path in addon_files(kustomization):
        for obj in parse_manifest(substitute(path.read_text(), variables or {}, path.name), path.name):
            _set_image_tags(obj, tags)
            for target, patch in patches:
                if all(_field(obj, key) == value for key, value in target.items()):
                    _merge(obj, patch, f"patch of {target}")
            objects.append(obj)
    return objects


def _field(obj: dict[str, Any], key: str) -> Any:
    return obj.get("kind") if key == "kind" else (obj.get("metadata") or {}).get(key)
