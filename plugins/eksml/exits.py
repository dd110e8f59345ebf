"""Exit status 2 of the images' entrypoints: input that can never succeed, so never retried.

Every way a workload runs reports it differently (a local process's return code, a pod's or an
MPIJob launcher's container status, SageMaker's ``FailureReason`` text); each operator finds
the status its way and hands it here, so what "bad input" means and what it does lives once.
"""

from __future__ import annotations

import re

from airflow.sdk.exceptions import AirflowFailException

#: Exit status of the images' entrypoints (their ``BAD_INPUT``) for input that can never succeed.
EXIT_BAD_INPUT = 2

#: How services quote an exit status in text: SageMaker's ``ExitCode 2`` (script mode) and
#: ``exit code: 2`` (own containers), Kubernetes' pod failure policy ``failed with exit code 2``.
_EXIT_IN_TEXT = re.compile(r"exit[ _]?code\b\W*(\d+)", re.IGNORECASE)


def exit_code_in(text: str | None) -> int | None:
    """The exit status a failure message quotes (the last one, the final attempt's), or None."""
    found = _EXIT_IN_TEXT.findall(text or "")
    return int(found[-1]) if found else None


def is_bad_input(exit_code: int | None) -> bool:
    return exit_code == EXIT_BAD_INPUT


def fail_for_good(message: str, exit_code: int | None, cause: BaseException | None = None) -> None:
    """Raise ``AirflowFailException`` (no retry) when ``exit_code`` is the bad-input status:
    a retry cannot succeed and would only start another (GPU) workload. Otherwise return."""
    if not is_bad_input(exit_code):
        return
    raise AirflowFailException(
        f"{message}\nThe workload exited with status {EXIT_BAD_INPUT}: its input can "
        "never succeed, so the task is not retried."
    ) from cause
