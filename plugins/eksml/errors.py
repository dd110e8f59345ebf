"""The project's exceptions share one base, in two kinds that callers tell apart.

* :class:`InvalidInput`: a parameter, setting, spec or file is wrong. Raised before anything is
  spent; retrying cannot help, the message says what to change. A ``ValueError``, so code that
  catches those keeps working.
* :class:`ServiceError`: a service, a cluster, a store or a process did not do what was asked.
  A retry may succeed. A ``RuntimeError``.

``except EksmlError`` catches every error the package raises on purpose; a subclass names the
place (``SettingsError``, ``EksctlError``...). Imports nothing, so every layer can use it.
"""

from __future__ import annotations


class EksmlError(Exception):
    """Any error the package raises on purpose."""


class InvalidInput(EksmlError, ValueError):
    """Wrong input: fix it and run again (no retry helps)."""


class ServiceError(EksmlError, RuntimeError):
    """A service, cluster, store or process failed; a retry may succeed."""


class PreflightError(InvalidInput):
    """The account would reject the run; the message lists each finding and its fix."""
