"""Run a command from an argv list (never a shell), streaming each output line to a log.

Long commands stream through :func:`arun_streaming` (the triggerer's event loop, or
``asyncio.run`` in a worker when not deferring); short ``-o json`` queries use
:func:`run_captured`. Output lines pass through a redactor before they are logged or
kept, so no caller ever holds unredacted text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

TAIL_LINES = 40


@dataclass
class RunResult:
    """Exit status and the (redacted) output of a finished command."""

    returncode: int
    stdout: str = ""
    tail: list[str] = field(default_factory=list)
    timed_out: bool = False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def run_captured(
    argv: Sequence[str], *, env: Mapping[str, str], redact: Callable[[str], str], timeout: float = 120
) -> RunResult:
    """Short command whose stdout is data (``-o json``); stderr is kept as the tail."""
    try:
        proc = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return RunResult(returncode=-1, tail=[f"{argv[0]} did not finish within {timeout:.0f}s"], timed_out=True)
    tail = [redact(line) for line in proc.stderr.splitlines()[-TAIL_LINES:]]
    return RunResult(returncode=proc.returncode, stdout=proc.stdout, tail=tail)


async def arun_captured(
    argv: Sequence[str], *, env: Mapping[str, str], redact: Callable[[str], str], timeout: float = 120
) -> RunResult:
    """Async :func:`run_captured`."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        return RunResult(returncode=-1, tail=[f"{argv[0]} did not finish within {timeout:.0f}s"], timed_out=True)
    except asyncio.CancelledError:
        _kill_group(proc.pid, signal.SIGKILL)
        raise
    tail = [redact(line) for line in err.decode(errors="replace").splitlines()[-TAIL_LINES:]]
    return RunResult(returncode=proc.returncode or 0, stdout=out.decode(errors="replace"), tail=tail)


async def arun_streaming(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Callable[[str], None],
    redact: Callable[[str], str],
    timeout: float,
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Stream stdout+stderr line by line to ``log``; timeout or cancellation ends the process group."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    if on_start:
        on_start(proc.pid)
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def _pump() -> int:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = redact(raw.decode(errors="replace").rstrip("\n"))
            tail.append(line)
            log(line)
        return await proc.wait()

    try:
        returncode = await asyncio.wait_for(_pump(), timeout)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGTERM)
        await proc.wait()
        return RunResult(returncode=proc.returncode or -1, tail=list(tail), timed_out=True)
    except asyncio.CancelledError:
        # The task was cancelled (task killed, deferral timeout): stop eksctl cleanly.
        _kill_group(proc.pid, signal.SIGTERM)
        raise
    return RunResult(returncode=returncode, tail=list(tail))
