"""SageMaker resource names: unique per run and try, and always valid.

SageMaker names (training jobs, models, endpoint configs, endpoints) must match
``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$``. Run ids hold ``:``, ``+``, ``_`` and are long, so a
readable slug is cut to fit and a hash of the unaltered inputs keeps two names apart even when
their slugs collide or are truncated the same way.
"""

from __future__ import annotations

import hashlib
import re

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MAX_NAME_LENGTH = 63
_HASH_LENGTH = 8


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")


def unique_name(*parts: object) -> str:
    """A valid SageMaker name: the slug of ``parts`` cut to fit, then a hash of all of them."""
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:_HASH_LENGTH]
    readable = _slug("-".join(str(p) for p in parts))[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("-")
    return f"{readable}-{digest}" if readable else digest


def sagemaker_job_name(dag_id: str, run_id: str, try_number: int, framework: str) -> str:
    """Training job name for one try of one run: ``<dag>-<framework>-t<try>-<run>-<hash>``."""
    if try_number < 0:
        raise ValueError(f"try_number must be >= 0, got {try_number}")
    return unique_name(dag_id, framework, f"t{try_number}", run_id)


def validate_name(name: str, what: str = "training job name") -> str:
    """Return ``name`` if SageMaker accepts it, else raise ValueError saying why."""
    if not NAME_PATTERN.match(name or ""):
        raise ValueError(
            f"invalid SageMaker {what} {name!r}: 1-{MAX_NAME_LENGTH} characters, letters, digits "
            f"and hyphens, starting and ending with a letter or digit"
        )
    return name
