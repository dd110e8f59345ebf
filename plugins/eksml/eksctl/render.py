"""ClusterConfig documents as YAML, the exact bytes eksctl reads with ``-f``."""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from eksml.eksctl.config import ClusterConfig


def render_yaml(config: ClusterConfig) -> str:
    """One ClusterConfig as a YAML document (key order kept for readability)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)


def render_stream(configs: Iterable[ClusterConfig]) -> str:
    """Several ClusterConfigs as a multi-document YAML stream (one per cluster)."""
    return "---\n".join(render_yaml(c) for c in configs)
