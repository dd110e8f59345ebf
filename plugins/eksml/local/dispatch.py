"""Where an operator's run forks into the local profile or the cluster (or AWS): one place, once per run.

astronomer-cosmos has one operator class per execution mode over a shared base; here the
profile is only known when the task runs (settings resolve per task try, never while the DAG
file is parsed), so one class carries both modes and :class:`ProfileDispatchMixin` picks one:
its ``execute`` reads the profile and calls ``execute_local`` or ``execute_remote``, and no
other method of the operator tests the profile again.
"""

from __future__ import annotations

from typing import Any

from eksml.settings import Settings, SettingsMixin


class ProfileDispatchMixin(SettingsMixin):
    """``execute`` runs ``execute_local`` in the ``local`` profile, ``execute_remote`` in the others.

    Put it before the operator's base class; a subclass that checks its arguments first
    overrides ``execute`` and calls ``super().execute(context)``.
    """

    def execute(self, context: Any) -> Any:
        settings = self.resolved_settings()
        if settings.profile == "local":
            return self.execute_local(context, settings)
        return self.execute_remote(context, settings)

    def execute_local(self, context: Any, settings: Settings) -> Any:
        """The work as processes on this machine (the images' virtualenvs)."""
        raise NotImplementedError

    def execute_remote(self, context: Any, settings: Settings) -> Any:
        """The work on the run's cluster (or AWS)."""
        raise NotImplementedError
