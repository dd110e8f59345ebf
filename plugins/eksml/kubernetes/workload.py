"""A :class:`~eksml.specs.WorkloadSpec` from whatever a templated operator field renders to.

Specs reach the training operators through XCom: a dict when the DAG renders templates as
native objects, a JSON string or a Python dict literal when it does not. Each of these
becomes the same checked spec here, so a bad spec fails the task before any pod or process
is started.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from eksml.specs import WorkloadSpec

#: Image folder names are also image repository names (lowercase, digits, ``-_.``).
_IMAGE_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")


class WorkloadSpecError(ValueError):
    """The workload spec given to an operator is missing, malformed or inconsistent."""


def coerce_spec(value: WorkloadSpec | Mapping[str, Any] | str | None) -> WorkloadSpec:
    """The checked spec of ``value`` (a spec, its ``to_dict()``, or that dict as text)."""
    if isinstance(value, WorkloadSpec):
        return validate_spec(value)
    if isinstance(value, str):
        value = _parse_text(value)
    if value is None:
        raise WorkloadSpecError("no workload spec: the upstream task pushed nothing to XCom (got None)")
    if not isinstance(value, Mapping):
        raise WorkloadSpecError(f"workload spec must be a mapping, got {type(value).__name__}")
    missing = {"name", "image", "script"} - set(value)
    if missing:
        raise WorkloadSpecError(f"workload spec lacks {', '.join(sorted(missing))}: {dict(value)!r:.200}")
    try:
        spec = WorkloadSpec.from_dict(value)
    except TypeError as exc:  # unknown keys, or a resources dict with unknown keys
        raise WorkloadSpecError(f"workload spec has unexpected fields: {exc}") from None
    return validate_spec(spec)


def _parse_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        raise WorkloadSpecError("no workload spec: the template rendered to an empty string")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    try:  # a dict rendered without render_template_as_native_obj is its Python repr
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        raise WorkloadSpecError(f"workload spec is neither JSON nor a dict literal: {stripped[:120]!r}") from None


def validate_spec(spec: WorkloadSpec) -> WorkloadSpec:
    """Return ``spec`` when every field is usable; raise :class:`WorkloadSpecError` naming the first that is not."""
    if not _IMAGE_NAME.match(spec.image or ""):
        raise WorkloadSpecError(f"image {spec.image!r} is not an image folder name (lowercase, digits, '-', '_', '.')")
    script = PurePosixPath(spec.script or "")
    if not spec.script or script.is_absolute() or ".." in script.parts or script.suffix != ".py":
        raise WorkloadSpecError(f"script {spec.script!r} must be a relative .py path inside the image folder")
    if not all(isinstance(arg, str) for arg in spec.args):
        raise WorkloadSpecError(f"every argument must be a string, got {list(spec.args)!r}")
    for key, val in spec.env.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(key)) or not isinstance(val, str):
            raise WorkloadSpecError(
                f"environment variable {key!r}={val!r} needs a C identifier name and a string value"
            )
    if not (isinstance(spec.replicas, int) and spec.replicas >= 1):
        raise WorkloadSpecError(f"replicas must be an integer >= 1, got {spec.replicas!r}")
    if not (isinstance(spec.slots_per_replica, int) and spec.slots_per_replica >= 1):
        raise WorkloadSpecError(f"slots_per_replica must be an integer >= 1, got {spec.slots_per_replica!r}")
    gpus = spec.resources.gpus
    if not (isinstance(gpus, int) and gpus >= 0):
        raise WorkloadSpecError(f"resources.gpus must be an integer >= 0, got {gpus!r}")
    for field in ("cpu", "memory"):
        _check_quantity(field, getattr(spec.resources, field))
    if not spec.node_role:
        raise WorkloadSpecError("node_role must name a node group role (for example 'train')")
    return spec


def _check_quantity(field: str, value: Any) -> None:
    from kubernetes.utils import parse_quantity  # the client's own parser: what the API server accepts

    try:
        if parse_quantity(str(value)) <= 0:
            raise ValueError
    except ValueError:
        raise WorkloadSpecError(f"resources.{field} {value!r} is not a positive Kubernetes quantity") from None
