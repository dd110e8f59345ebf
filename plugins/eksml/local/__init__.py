"""Local profile: container workloads as processes in their image's virtualenv."""

from eksml.local.runner import LocalRunError, LocalRunner

__all__ = ["LocalRunError", "LocalRunner"]
