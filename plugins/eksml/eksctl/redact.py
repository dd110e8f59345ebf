"""Scrub credentials from eksctl output before it reaches the task log.

eksctl does not print secrets on purpose, but AWS SDK debug lines, error messages that
echo a request, or a kubeconfig token can. Known values (the credentials we passed in)
are replaced exactly; well-known shapes (access key ids, EKS tokens, bearer headers,
``secret=...`` pairs) are replaced by pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"k8s-aws-v1\.[A-Za-z0-9_\-]+"), "k8s-aws-v1." + MASK),
    (re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"), r"\1" + MASK),
    (
        re.compile(
            r"(?i)((?:aws_)?(?:secret_access_key|session_token|secret|password|token)[\"']?\s*[:=]\s*[\"']?)"
            r"([^\s\"',}]+)"
        ),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)(X-Amz-(?:Security-Token|Signature|Credential)=)[^&\s]+"), r"\1" + MASK),
)


class Redactor:
    """Callable that masks ``secrets`` (exact values) and secret-shaped text in a line."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a value containing another is masked whole; very short values
        # would mask ordinary words and are never real credentials.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text
